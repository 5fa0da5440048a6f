//! spar-grpcload: the gRPC load client for the benchmarks, one HTTP/2
//! connection per `--connections`, open loop at `--rate` or flat out with
//! `--max` (see spar_loadgen::run).
//!
//!   spar-grpcload ADDR raw --path /svc/Method [--app-id ID] [--body N]
//!       a unary call with N bytes; with --app-id, sent with `dapr-app-id`
//!       metadata (spar's transparent gRPC proxy)
//!   spar-grpcload ADDR invoke --app-id ID --method M [--body N]
//!       Dapr `InvokeService` (HTTP verb GET without a body, POST with one)
//!   spar-grpcload ADDR get --store S --key K
//!   spar-grpcload ADDR save --store S --key K [--body N]
//!       Dapr `GetState` / `SaveState`
//!   spar-grpcload ADDR config-get --store S --key K
//!       Dapr `GetConfiguration`
//!
//! Prints `p50_ms p90_ms p99_ms p999_ms max_ms rps errors`.

use bytes::Bytes;
use spar_loadgen::grpc::Raw;
use spar_loadgen::{parse_load, run, Conn};
use spar_proto::common::{http_extension, HttpExtension, InvokeRequest, StateItem};
use spar_proto::runtime::dapr_client::DaprClient;
use spar_proto::runtime::{
    GetConfigurationRequest, GetStateRequest, InvokeServiceRequest, SaveStateRequest,
};
use tonic::transport::{Channel, Endpoint};

#[derive(Clone)]
enum Op {
    Raw {
        path: http::uri::PathAndQuery,
        app_id: Option<String>,
    },
    Invoke {
        app_id: String,
        method: String,
    },
    Get {
        store: String,
        key: String,
    },
    Save {
        store: String,
        key: String,
    },
    ConfigGet {
        store: String,
        key: String,
    },
}

struct Grpc {
    ch: Channel,
    op: Op,
    body: Bytes,
}

impl Conn for Grpc {
    async fn call(&mut self) -> Result<(), String> {
        let e = |s: tonic::Status| format!("{:?}: {}", s.code(), s.message());
        match &self.op {
            Op::Raw { path, app_id } => {
                let mut g = tonic::client::Grpc::new(self.ch.clone());
                g.ready().await.map_err(|x| x.to_string())?;
                let mut req = tonic::Request::new(self.body.clone());
                if let Some(id) = app_id {
                    req.metadata_mut()
                        .insert("dapr-app-id", id.parse().map_err(|_| "bad app id")?);
                }
                g.unary(req, path.clone(), Raw).await.map_err(e)?;
            }
            Op::Invoke { app_id, method } => {
                let verb = if self.body.is_empty() {
                    http_extension::Verb::Get
                } else {
                    http_extension::Verb::Post
                };
                let req = InvokeServiceRequest {
                    id: app_id.clone(),
                    message: Some(InvokeRequest {
                        method: method.clone(),
                        data: Some(prost_types::Any {
                            type_url: String::new(),
                            value: self.body.to_vec(),
                        }),
                        content_type: "application/octet-stream".into(),
                        http_extension: Some(HttpExtension {
                            verb: verb as i32,
                            querystring: String::new(),
                        }),
                    }),
                };
                DaprClient::new(self.ch.clone())
                    .invoke_service(req)
                    .await
                    .map_err(e)?;
            }
            Op::Get { store, key } => {
                DaprClient::new(self.ch.clone())
                    .get_state(GetStateRequest {
                        store_name: store.clone(),
                        key: key.clone(),
                        ..Default::default()
                    })
                    .await
                    .map_err(e)?;
            }
            Op::Save { store, key } => {
                DaprClient::new(self.ch.clone())
                    .save_state(SaveStateRequest {
                        store_name: store.clone(),
                        states: vec![StateItem {
                            key: key.clone(),
                            value: self.body.to_vec(),
                            ..Default::default()
                        }],
                    })
                    .await
                    .map_err(e)?;
            }
            Op::ConfigGet { store, key } => {
                DaprClient::new(self.ch.clone())
                    .get_configuration(GetConfigurationRequest {
                        store_name: store.clone(),
                        keys: vec![key.clone()],
                        ..Default::default()
                    })
                    .await
                    .map_err(e)?;
            }
        }
        Ok(())
    }
}

fn parse() -> Result<(spar_loadgen::Load, String, Op, usize), String> {
    let (load, rest) = parse_load(std::env::args().skip(1).collect())?;
    let mut a = rest.into_iter();
    let addr = a.next().ok_or("missing ADDR")?;
    let mode = a
        .next()
        .ok_or("missing mode: raw | invoke | get | save | config-get")?;
    let (mut path, mut app_id, mut method, mut store, mut key, mut body) =
        (None, None, None, None, None, 0usize);
    while let Some(x) = a.next() {
        let mut val = || a.next().ok_or(format!("{x} needs a value"));
        match x.as_str() {
            "--path" => path = Some(val()?),
            "--app-id" => app_id = Some(val()?),
            "--method" => method = Some(val()?),
            "--store" => store = Some(val()?),
            "--key" => key = Some(val()?),
            "--body" => body = val()?.parse().map_err(|e| format!("--body: {e}"))?,
            o => return Err(format!("unexpected argument {o}")),
        }
    }
    let need = |v: Option<String>, n: &str| v.ok_or(format!("{mode} needs {n}"));
    let op = match mode.as_str() {
        "raw" => Op::Raw {
            path: need(path, "--path")?
                .parse()
                .map_err(|e| format!("--path: {e}"))?,
            app_id,
        },
        "invoke" => Op::Invoke {
            app_id: need(app_id, "--app-id")?,
            method: need(method, "--method")?,
        },
        "get" => Op::Get {
            store: need(store, "--store")?,
            key: need(key, "--key")?,
        },
        "save" => Op::Save {
            store: need(store, "--store")?,
            key: need(key, "--key")?,
        },
        "config-get" => Op::ConfigGet {
            store: need(store, "--store")?,
            key: need(key, "--key")?,
        },
        m => return Err(format!("unknown mode {m}")),
    };
    Ok((load, addr, op, body))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (load, addr, op, body) = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("spar-grpcload: {e}");
            std::process::exit(2);
        }
    };
    let body = Bytes::from(vec![b'x'; body]);
    let uri = if addr.contains("://") {
        addr
    } else {
        format!("http://{addr}")
    };
    let report = run(&load, move || {
        let (uri, op, body) = (uri.clone(), op.clone(), body.clone());
        async move {
            let ch = Endpoint::from_shared(uri)
                .map_err(|e| e.to_string())?
                .tcp_nodelay(true)
                .connect()
                .await
                .map_err(|e| e.to_string())?;
            Ok(Grpc { ch, op, body })
        }
    })
    .await;
    println!("{report}");
}
