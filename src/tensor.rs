//! [`GpuTensor`]: f32 values in a `wgpu::Buffer`, with a shape.

use crate::context::Context;
use crate::error::{Error, Result};

/// Usages every tensor buffer created by this crate has: read and written by
/// kernels (STORAGE), uploaded to (COPY_DST) and read back from (COPY_SRC).
pub const TENSOR_USAGES: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// A row-major f32 tensor living in a `wgpu::Buffer`, starting `offset` bytes in.
///
/// Cloning is cheap and shares the buffer. A tensor may wrap a caller's buffer
/// ([`GpuTensor::from_buffer`]) so that the library reads and writes the
/// caller's memory directly.
#[derive(Clone, Debug)]
pub struct GpuTensor {
    buffer: wgpu::Buffer,
    offset: u64,
    shape: Vec<usize>,
}

/// Elements in `shape`, or `EmptyShape` when a dimension is zero or the
/// shape has no dimension at all.
pub(crate) fn element_count(shape: &[usize]) -> Result<usize> {
    if shape.is_empty() || shape.contains(&0) {
        return Err(Error::EmptyShape {
            shape: shape.to_vec(),
        });
    }
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| Error::EmptyShape {
            shape: shape.to_vec(),
        })
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
        let n = element_count(shape)?;
        if n != data.len() {
            return Err(Error::LengthMismatch {
                what: "data",
                shape: shape.to_vec(),
                expected: n,
                actual: data.len(),
            });
        }
        let tensor = Self::zeros(ctx, shape)?;
        ctx.scoped("uploading a tensor", || {
            ctx.queue()
                .write_buffer(&tensor.buffer, 0, bytemuck::cast_slice(data))
        })?;
        Ok(tensor)
    }

    /// A new tensor of `shape`, filled with zeros.
    pub fn zeros(ctx: &Context, shape: &[usize]) -> Result<Self> {
        let n = element_count(shape)?;
        let bytes = (n as u64) * 4;
        let max = ctx.limits().max_buffer_size;
        if bytes > max {
            return Err(Error::TensorTooLarge {
                what: "tensor",
                bytes,
                max,
            });
        }
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
        })
    }

    /// Wraps part of a caller's buffer: `shape` f32 values starting `offset`
    /// bytes in. The buffer needs `STORAGE` usage (and `COPY_SRC` to be read
    /// back with [`GpuTensor::read`]).
    pub fn from_buffer(buffer: wgpu::Buffer, offset: u64, shape: &[usize]) -> Result<Self> {
        let n = element_count(shape)?;
        if offset % 4 != 0 {
            return Err(Error::MisalignedOffset {
                what: "tensor",
                offset,
            });
        }
        if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::MissingUsage {
                what: "tensor",
                needed: wgpu::BufferUsages::STORAGE,
                actual: buffer.usage(),
            });
        }
        let end = offset + n as u64 * 4;
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

    /// Bytes the values take.
    pub fn size_bytes(&self) -> u64 {
        self.len() as u64 * 4
    }

    /// The buffer holding the values.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// Byte offset of the first value in [`GpuTensor::buffer`].
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The same values seen with another shape of the same element count.
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
    /// the next submission).
    pub fn write(&self, ctx: &Context, data: &[f32]) -> Result<()> {
        if data.len() != self.len() {
            return Err(Error::LengthMismatch {
                what: "data",
                shape: self.shape.clone(),
                expected: self.len(),
                actual: data.len(),
            });
        }
        ctx.scoped("writing a tensor", || {
            ctx.queue()
                .write_buffer(&self.buffer, self.offset, bytemuck::cast_slice(data))
        })
    }

    /// Reads the values back, blocking until the GPU is done with them.
    pub fn read(&self, ctx: &Context) -> Result<Vec<f32>> {
        let pending = self.start_read(ctx)?;
        ctx.wait()?;
        pollster::block_on(pending.finish())
    }

    /// Reads the values back without blocking the calling thread.
    ///
    /// The copy is submitted at once; the future completes once the device has
    /// been polled after the copy finished — by [`Context::wait`], another
    /// submission's wait, or a thread that polls the device. On the web the
    /// browser polls.
    pub async fn read_async(&self, ctx: &Context) -> Result<Vec<f32>> {
        self.start_read(ctx)?.finish().await
    }

    /// Copies the values into a mappable staging buffer and asks for it to be
    /// mapped; the returned handle waits for the mapping.
    fn start_read(&self, ctx: &Context) -> Result<PendingRead> {
        if !self.buffer.usage().contains(wgpu::BufferUsages::COPY_SRC) {
            return Err(Error::MissingUsage {
                what: "tensor read back",
                needed: wgpu::BufferUsages::COPY_SRC,
                actual: self.buffer.usage(),
            });
        }
        let size = self.size_bytes();
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
            encoder.copy_buffer_to_buffer(&self.buffer, self.offset, &staging, 0, size);
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
    async fn finish(self) -> Result<Vec<f32>> {
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
            bytemuck::cast_slice::<u8, f32>(&view).to_vec()
        };
        self.staging.unmap();
        Ok(values)
    }
}
