//! [`GpuTensor`]: f32 or f16 values in a `wgpu::Buffer`, with a shape.

use std::sync::Arc;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::shape::{DType, element_count};

/// Usages every tensor buffer created by this crate has: read and written by
/// kernels (STORAGE), uploaded to (COPY_DST) and read back from (COPY_SRC).
pub const TENSOR_USAGES: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// `values` as the bytes of `dtype` (f16 rounds to nearest even).
fn encode_values(values: &[f32], dtype: DType) -> Vec<u8> {
    match dtype {
        DType::F32 => bytemuck::cast_slice(values).to_vec(),
        DType::F16 => values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
    }
}

/// The bytes of `dtype` values, as f32.
fn decode_values(bytes: &[u8], dtype: DType) -> Vec<f32> {
    match dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
    }
}

/// A row-major f32 or f16 tensor living in a `wgpu::Buffer`, starting `offset` bytes in.
///
/// Cloning is cheap and shares the buffer. A tensor may wrap a caller's buffer
/// ([`GpuTensor::from_buffer`]) so that the library reads and writes the
/// caller's memory directly.
#[derive(Clone, Debug)]
pub struct GpuTensor {
    buffer: wgpu::Buffer,
    offset: u64,
    shape: Vec<usize>,
    dtype: DType,
    /// Alive while any clone of this tensor is: the bind cache frees what
    /// it built for the tensor once it is gone.
    life: Arc<()>,
}

impl GpuTensor {
    /// Uploads `data` as a tensor of `shape`.
    ///
    /// ```
    /// # let ctx = wgpu_norm::Context::new()?;
    /// let t = wgpu_norm::GpuTensor::from_slice(&ctx, &[1.0, 2.0, 3.0, 4.0], &[2, 2])?;
    /// assert_eq!(t.read(&ctx)?, vec![1.0, 2.0, 3.0, 4.0]);
    /// # Ok::<(), wgpu_norm::Error>(())
    /// ```
    pub fn from_slice(ctx: &Context, data: &[f32], shape: &[usize]) -> Result<Self> {
        Self::from_slice_as(ctx, data, shape, DType::F32)
    }

    /// Uploads `data` as a tensor of `shape` stored as `dtype` (rounded to
    /// nearest for f16). f16 needs `SHADER_F16`: without it, `MissingFeature`.
    ///
    /// Refuses what [`GpuTensor::zeros_as`] refuses, and `data` of another
    /// length than the shape holds (`LengthMismatch`).
    ///
    /// ```
    /// # let ctx = wgpu_norm::Context::new()?;
    /// use wgpu_norm::{DType, GpuTensor};
    /// if ctx.capabilities().shader_f16 {
    ///     let t = GpuTensor::from_slice_as(&ctx, &[1.0, 0.1], &[2], DType::F16)?;
    ///     assert_eq!(t.read(&ctx)?, vec![1.0, half::f16::from_f32(0.1).to_f32()]);
    /// }
    /// # Ok::<(), wgpu_norm::Error>(())
    /// ```
    pub fn from_slice_as(
        ctx: &Context,
        data: &[f32],
        shape: &[usize],
        dtype: DType,
    ) -> Result<Self> {
        let n = element_count(shape)?;
        if n != data.len() {
            return Err(Error::LengthMismatch {
                what: "data",
                shape: shape.to_vec(),
                expected: n,
                actual: data.len(),
            });
        }
        let tensor = Self::zeros_as(ctx, shape, dtype)?;
        tensor.write(ctx, data)?;
        Ok(tensor)
    }

    /// A new f32 tensor of `shape`, filled with zeros.
    pub fn zeros(ctx: &Context, shape: &[usize]) -> Result<Self> {
        Self::zeros_as(ctx, shape, DType::F32)
    }

    /// A new tensor of `shape` stored as `dtype`, filled with zeros. The
    /// buffer is padded to a multiple of 16 bytes (whole vec4s of f32).
    ///
    /// Refuses, before allocating: an empty shape or a zero dimension
    /// (`EmptyShape`), a shape whose element count overflows `usize`
    /// (`ShapeOverflow`), more bytes than the device's `max_buffer_size`
    /// (`TensorTooLarge`), f16 without `SHADER_F16` (`MissingFeature`); and
    /// returns `OutOfMemory` where the device cannot allocate it.
    pub fn zeros_as(ctx: &Context, shape: &[usize], dtype: DType) -> Result<Self> {
        ctx.check_dtype_supported(dtype)?;
        let bytes = buffer_bytes(ctx, element_count(shape)? as u64, dtype)?;
        // What ops built for tensors dropped since holds their buffers: free it first.
        ctx.bind_cache().sweep();
        let buffer = ctx.scoped("allocating a tensor", || {
            ctx.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgpu-norm tensor"),
                size: bytes,
                usage: TENSOR_USAGES,
                mapped_at_creation: false,
            })
        })?;
        Ok(GpuTensor {
            buffer,
            offset: 0,
            shape: shape.to_vec(),
            dtype,
            life: Arc::new(()),
        })
    }

    /// Wraps part of a caller's buffer: `shape` f32 values starting `offset`
    /// bytes in. The buffer needs `STORAGE` usage (and `COPY_SRC` to be read
    /// back with [`GpuTensor::read`]).
    ///
    /// Keep the wrapper for as long as you use the buffer with the ops: what
    /// an op builds for a call (bind groups, uniforms) lives as long as the
    /// tensors it was built for, and a warm call reuses it.
    pub fn from_buffer(buffer: wgpu::Buffer, offset: u64, shape: &[usize]) -> Result<Self> {
        Self::from_buffer_as(buffer, offset, shape, DType::F32)
    }

    /// [`GpuTensor::from_buffer`] for values stored as `dtype`. The offset must
    /// be a multiple of 4 bytes (f32) or 2 (f16), and the buffer must reach the
    /// next multiple of 4 bytes past the last value (bindings and copies move
    /// whole 4-byte words).
    ///
    /// Refuses `EmptyShape` and `ShapeOverflow` shapes, a misaligned offset
    /// (`MisalignedOffset`), a buffer without `STORAGE` (`MissingUsage`), and
    /// an offset and shape that reach past the buffer's end, however large
    /// (`BufferTooSmall`, with the end saturated at `u64::MAX`).
    pub fn from_buffer_as(
        buffer: wgpu::Buffer,
        offset: u64,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Self> {
        let n = element_count(shape)?;
        if offset % dtype.size_bytes() != 0 {
            return Err(Error::MisalignedOffset {
                what: "tensor",
                offset,
                alignment: dtype.size_bytes(),
            });
        }
        if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::MissingUsage {
                what: "tensor",
                needed: wgpu::BufferUsages::STORAGE,
                actual: buffer.usage(),
            });
        }
        // Saturating: a huge shape or offset is a buffer too small, not an overflow.
        let end = offset
            .saturating_add((n as u64).saturating_mul(dtype.size_bytes()))
            .checked_next_multiple_of(4)
            .unwrap_or(u64::MAX);
        if end > buffer.size() {
            return Err(Error::BufferTooSmall {
                what: "tensor",
                offset,
                end,
                buffer_size: buffer.size(),
            });
        }
        Ok(GpuTensor {
            buffer,
            offset,
            shape: shape.to_vec(),
            dtype,
            life: Arc::new(()),
        })
    }

    /// The shape, outermost dimension first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Always false: tensors have at least one element.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Bytes the values take.
    pub fn size_bytes(&self) -> u64 {
        self.len() as u64 * self.dtype.size_bytes()
    }

    /// The buffer holding the values.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// The token that is alive while this tensor (or a clone) is.
    pub(crate) fn life(&self) -> &Arc<()> {
        &self.life
    }

    /// Byte offset of the first value in [`GpuTensor::buffer`].
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The same values seen with another shape of the same element count
    /// (else `LengthMismatch`; `EmptyShape`, `ShapeOverflow` as for
    /// [`GpuTensor::zeros_as`]).
    pub fn reshape(&self, shape: &[usize]) -> Result<Self> {
        let n = element_count(shape)?;
        if n != self.len() {
            return Err(Error::LengthMismatch {
                what: "reshape",
                shape: shape.to_vec(),
                expected: n,
                actual: self.len(),
            });
        }
        Ok(GpuTensor {
            shape: shape.to_vec(),
            ..self.clone()
        })
    }

    /// Overwrites the values with `data` (through the queue, ordered before
    /// the next submission), rounded to nearest for an f16 tensor. `data` of
    /// another length than the tensor's is refused (`LengthMismatch`).
    pub fn write(&self, ctx: &Context, data: &[f32]) -> Result<()> {
        if data.len() != self.len() {
            return Err(Error::LengthMismatch {
                what: "data",
                shape: self.shape.clone(),
                expected: self.len(),
                actual: data.len(),
            });
        }
        // The queue writes whole 4-byte words: an f16 tensor at a 2-byte
        // phase, or of odd length, keeps its neighbours' halves as they are
        // only if they are read first; write the covering words instead.
        let (start, end) = self.word_span();
        let mut bytes = encode_values(data, self.dtype);
        if start != self.offset || end != self.offset + self.size_bytes() {
            let mut words = self.read_bytes(ctx, start, end)?;
            let at = (self.offset - start) as usize;
            words[at..at + bytes.len()].copy_from_slice(&bytes);
            bytes = words;
        }
        ctx.scoped("writing a tensor", || {
            ctx.queue().write_buffer(&self.buffer, start, &bytes)
        })
    }

    /// The 4-byte-aligned byte range that covers the values.
    fn word_span(&self) -> (u64, u64) {
        let start = self.offset & !3;
        (start, (self.offset + self.size_bytes()).next_multiple_of(4))
    }

    /// Bytes `start..end` of the buffer (4-byte aligned), read back blocking.
    fn read_bytes(&self, ctx: &Context, start: u64, end: u64) -> Result<Vec<u8>> {
        let pending = self.start_read_bytes(ctx, start, end)?;
        ctx.wait()?;
        pollster::block_on(pending.finish())
    }

    /// Reads the values back (as f32, exactly, for f16 too), blocking until
    /// the GPU is done with them. A buffer without `COPY_SRC` is refused
    /// (`MissingUsage`); mapping and polling failures are returned (`Map`,
    /// `Poll`), as is a lost device.
    pub fn read(&self, ctx: &Context) -> Result<Vec<f32>> {
        let (start, end) = self.word_span();
        let bytes = self.read_bytes(ctx, start, end)?;
        Ok(self.values_of(&bytes, start))
    }

    /// The tensor's values inside `words`, bytes read from `start` on.
    fn values_of(&self, words: &[u8], start: u64) -> Vec<f32> {
        let at = (self.offset - start) as usize;
        decode_values(&words[at..at + self.size_bytes() as usize], self.dtype)
    }

    /// Reads the values back without blocking the calling thread.
    ///
    /// The copy is submitted at once; the future completes once the device has
    /// been polled after the copy finished — by [`Gpu::wait`](crate::Gpu::wait), another
    /// submission's wait, or a thread that polls the device. On the web the
    /// browser polls.
    pub async fn read_async(&self, ctx: &Context) -> Result<Vec<f32>> {
        let (start, end) = self.word_span();
        let bytes = self.start_read_bytes(ctx, start, end)?.finish().await?;
        Ok(self.values_of(&bytes, start))
    }

    /// Copies bytes `start..end` into a mappable staging buffer and asks for
    /// it to be mapped; the returned handle waits for the mapping.
    fn start_read_bytes(&self, ctx: &Context, start: u64, end: u64) -> Result<PendingRead> {
        if !self.buffer.usage().contains(wgpu::BufferUsages::COPY_SRC) {
            return Err(Error::MissingUsage {
                what: "tensor read back",
                needed: wgpu::BufferUsages::COPY_SRC,
                actual: self.buffer.usage(),
            });
        }
        let size = end - start;
        let (staging, receiver) = ctx.scoped("reading a tensor back", || {
            // A MAP_READ buffer cannot be STORAGE, so the values take a
            // detour through a staging buffer the CPU can map.
            let staging = ctx.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgpu-norm readback"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut encoder =
                ctx.device()
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("wgpu-norm readback"),
                    });
            encoder.copy_buffer_to_buffer(&self.buffer, start, &staging, 0, size);
            ctx.queue().submit([encoder.finish()]);
            let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
            staging
                .slice(..)
                .map_async(wgpu::MapMode::Read, move |r| sender.send(r).unwrap_or(()));
            (staging, receiver)
        })?;
        Ok(PendingRead { staging, receiver })
    }
}

/// A readback whose mapping has been requested.
struct PendingRead {
    staging: wgpu::Buffer,
    receiver: futures_intrusive::channel::shared::OneshotReceiver<
        std::result::Result<(), wgpu::BufferAsyncError>,
    >,
}

impl PendingRead {
    async fn finish(self) -> Result<Vec<u8>> {
        match self.receiver.receive().await {
            Some(result) => result?,
            None => {
                return Err(Error::DeviceLost(
                    "the buffer mapping was dropped before it completed".into(),
                ));
            }
        }
        let values = {
            let view =
                self.staging
                    .slice(..)
                    .get_mapped_range()
                    .map_err(|e| Error::Validation {
                        during: "reading a tensor back",
                        message: e.to_string(),
                    })?;
            view.to_vec()
        };
        self.staging.unmap();
        Ok(values)
    }
}

/// The bytes of a buffer of `n` values of `dtype` (padded to 16), refused
/// (`TensorTooLarge`) past the device's `max_buffer_size`.
pub(crate) fn buffer_bytes(ctx: &Context, n: u64, dtype: DType) -> Result<u64> {
    let bytes = n
        .checked_mul(dtype.size_bytes())
        .map_or(u64::MAX, |b| b.next_multiple_of(16));
    let max = ctx.limits().max_buffer_size;
    if bytes > max {
        return Err(Error::TensorTooLarge {
            what: "tensor",
            bytes,
            max,
        });
    }
    Ok(bytes)
}
