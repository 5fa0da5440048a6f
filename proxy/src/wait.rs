//! `daprd --wait`: waits until the sidecar on the HTTP port answers its
//! outbound health check, as daprd's helper does (60 s at most, a probe
//! every 100 ms, each bounded by 500 ms), for scripts that start an app
//! only once its sidecar can reach out.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(60);
const PROBE: Duration = Duration::from_millis(500);
const PERIOD: Duration = Duration::from_millis(100);

pub fn outbound_ready(port: u16) {
    let url = format!("http://localhost:{port}/v1.0/healthz/outbound");
    println!(
        "Waiting for Dapr to be outbound ready (timeout: {} seconds): url={url}",
        TIMEOUT.as_secs()
    );
    let until = Instant::now() + TIMEOUT;
    let mut last_print = Instant::now();
    let mut last_err = String::new();
    while Instant::now() < until {
        match probe(port) {
            Ok(()) => {
                println!("Dapr is outbound ready!");
                return;
            }
            Err(e) => last_err = e,
        }
        if Instant::now() >= last_print {
            last_print = Instant::now() + Duration::from_secs(1);
            println!("Dapr outbound NOT ready yet: {last_err}");
        }
        std::thread::sleep(PERIOD);
    }
    println!("timeout waiting for Dapr to become outbound ready. Last error: {last_err}");
}

fn probe(port: u16) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, PROBE).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(PROBE)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(PROBE))
        .map_err(|e| e.to_string())?;
    s.write_all(
        b"GET /v1.0/healthz/outbound HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).map_err(|e| e.to_string())?;
    match &head[9..12] {
        b"204" => Ok(()),
        code => Err(format!(
            "HTTP status code {}",
            String::from_utf8_lossy(code)
        )),
    }
}
