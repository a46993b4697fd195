//! `wgpu-norm web`: serves the page in `web/` (compiled into the binary)
//! and the plans it runs, made by the library for the visiting browser's
//! adapter (`POST /plans` with `web/runner.js`'s `describeAdapter`).
//!
//! The check cases: LayerNorm and RMSNorm, forward (with scale, bias where
//! the op has one, and the statistics) and backward, on 4x33 (a dim that is
//! not a multiple of 4), 3x1024, 70000x8 (more rows than one dispatch
//! dimension's 65,535 workgroups for the row-per-workgroup kernels) and
//! 2x20000 (a long row), each with the plan's own kernel and with every
//! kernel the adapter can run forced; f16 on the first two shapes where the
//! adapter has shader-f16; the forward ops fused with a residual add on
//! every shape (every kernel on 4x33). The bench: the four ops with their planned
//! kernels on 8x512x768 and 64x4096.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

use serde_json::{Value, json};
use wgpu_norm::export::{ExportRequest, Target, export, kernels_for};
use wgpu_norm::{CopyKernel, DType, LayerNorm};

use crate::common::{CliError, CliResult};

#[derive(clap::Args)]
pub struct Args {
    /// Port to listen on (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
}

const FILES: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../../../web/index.html"),
    ),
    (
        "/index.html",
        "text/html; charset=utf-8",
        include_str!("../../../web/index.html"),
    ),
    (
        "/app.js",
        "text/javascript",
        include_str!("../../../web/app.js"),
    ),
    (
        "/runner.js",
        "text/javascript",
        include_str!("../../../web/runner.js"),
    ),
    (
        "/reference.js",
        "text/javascript",
        include_str!("../../../web/reference.js"),
    ),
];

const CHECK_SHAPES: &[&[usize]] = &[&[4, 33], &[3, 1024], &[70_000, 8], &[2, 20_000]];
const BENCH_SHAPES: &[&[usize]] = &[&[8, 512, 768], &[64, 4096]];
const OPS: [&str; 4] = [
    "layer-norm",
    "rms-norm",
    "layer-norm-backward",
    "rms-norm-backward",
];

pub fn main(args: Args) -> CliResult {
    let listener = TcpListener::bind((args.host.as_str(), args.port)).map_err(|e| {
        CliError::Input(format!("cannot listen on {}:{}: {e}", args.host, args.port))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    println!(
        "wgpu-norm web: serving on http://{addr}/ (add ?auto=1 to run everything without clicks)"
    );
    std::io::stdout().flush().ok();
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        std::thread::spawn(move || {
            if let Err(e) = serve(stream) {
                eprintln!("wgpu-norm web: {e}");
            }
        });
    }
    Ok(())
}

fn serve(mut stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let path = path.split('?').next().unwrap_or("/").to_string();
    let method = method.to_string();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    // Bounded: an adapter description is a few hundred bytes.
    let mut body = vec![0u8; length.min(1 << 20)];
    reader.read_exact(&mut body)?;
    let (status, kind, content) = match (method.as_str(), path.as_str()) {
        ("GET", p) => match FILES.iter().find(|f| f.0 == p) {
            Some((_, kind, text)) => ("200 OK", *kind, text.as_bytes().to_vec()),
            None => ("404 Not Found", "text/plain", b"not found".to_vec()),
        },
        ("POST", "/plans") => match plans(&body) {
            Ok(v) => ("200 OK", "application/json", v.to_string().into_bytes()),
            Err(e) => ("400 Bad Request", "text/plain", e.to_string().into_bytes()),
        },
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            b"GET the page, POST /plans".to_vec(),
        ),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        content.len()
    )?;
    stream.write_all(&content)?;
    stream.flush()
}

/// The check cases and bench plans for the adapter `body` describes.
fn plans(body: &[u8]) -> CliResult<Value> {
    let desc: Value = serde_json::from_slice(body)
        .map_err(|e| CliError::Input(format!("the adapter description is not JSON: {e}")))?;
    let target = Target::from_json(&desc)?;
    let f16 = target.features.contains(wgpu::Features::SHADER_F16);
    let plan = |op: &str,
                shape: &[usize],
                dtype: DType,
                kernel: Option<(bool, &str)>,
                residual: bool|
     -> CliResult<Value> {
        let backward = op.ends_with("backward");
        let mut config = LayerNorm::new().config();
        if let Some((bwd, name)) = kernel {
            if bwd {
                config.backward_kernel = wgpu_norm::BackwardKernel::ALL
                    .into_iter()
                    .find(|k| k.name() == name);
            } else {
                config.kernel = wgpu_norm::Kernel::by_name(name);
            }
        }
        let req = ExportRequest {
            op: op.into(),
            shape: shape.to_vec(),
            dtype,
            config,
            scale: true,
            bias: true,
            stats: !backward,
            residual,
            copy_kernel: None,
        };
        Ok(export(&req, &target)?)
    };
    let case = |op: &str, shape: &[usize], dtype: DType, plan: Value| {
        json!({
            "op": op,
            "shape": shape,
            "cols": shape[shape.len() - 1],
            "dtype": dtype.to_string(),
            "plan": plan,
        })
    };
    let mut cases = Vec::new();
    for &shape in CHECK_SHAPES {
        let cols = shape[shape.len() - 1];
        let (fwd, bwd) = kernels_for(&target, cols)?;
        for op in OPS {
            let backward = op.ends_with("backward");
            cases.push(case(
                op,
                shape,
                DType::F32,
                plan(op, shape, DType::F32, None, false)?,
            ));
            if !backward {
                // The fused residual add (x + residual + bias, then the norm).
                let p = plan(op, shape, DType::F32, None, true)?;
                cases.push(case(op, shape, DType::F32, p));
            }
            let names: Vec<&str> = match backward {
                true => bwd.iter().map(|k| k.name()).collect(),
                false => fwd.iter().map(|k| k.name()).collect(),
            };
            for name in names {
                let forced = Some((backward, name));
                cases.push(case(
                    op,
                    shape,
                    DType::F32,
                    plan(op, shape, DType::F32, forced, false)?,
                ));
                if !backward && shape == [4, 33] {
                    let p = plan(op, shape, DType::F32, forced, true)?;
                    cases.push(case(op, shape, DType::F32, p));
                }
            }
            if f16 && shape.len() == 2 && shape[0] * shape[1] <= 4096 {
                cases.push(case(
                    op,
                    shape,
                    DType::F16,
                    plan(op, shape, DType::F16, None, false)?,
                ));
            }
        }
    }
    let mut bench = Vec::new();
    let mut floors = serde_json::Map::new();
    for &shape in BENCH_SHAPES {
        let n: usize = shape.iter().product();
        // The floor's candidates: every copy kernel on the X bytes (the page
        // takes the fastest, as `bench` does natively).
        let copies = CopyKernel::ALL
            .into_iter()
            .map(|k| {
                let req = ExportRequest {
                    op: "copy".into(),
                    copy_kernel: Some(k),
                    ..ExportRequest::new("copy", shape)
                };
                Ok(export(&req, &target)?)
            })
            .collect::<CliResult<Vec<_>>>()?;
        floors.insert(wgpu_norm::shape_string(shape), json!(copies));
        for op in OPS {
            let moved = if op.ends_with("backward") {
                3 * n * 4
            } else {
                2 * n * 4
            };
            let mut c = case(
                op,
                shape,
                DType::F32,
                plan(op, shape, DType::F32, None, false)?,
            );
            c["moved_bytes"] = json!(moved);
            c["copy_bytes"] = json!(n * 4);
            bench.push(c);
        }
    }
    Ok(json!({
        "target": target.name,
        "cases": cases,
        "bench": bench,
        "floors": floors,
    }))
}
