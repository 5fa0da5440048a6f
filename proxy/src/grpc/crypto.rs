//! The crypto RPCs: `EncryptAlpha1` / `DecryptAlpha1` (bidirectional
//! streams of `StreamPayload` chunks in Dapr's `dapr.io/enc/v1` scheme)
//! and the subtle single-message operations.
//!
//! A stream's first message carries the options (within 5 s, as daprd);
//! the chain runs on it, then a task moves the data: it reads a chunk only
//! when the previous output went out, through a channel of two messages,
//! so a client that stops reading stops the sidecar reading too (HTTP/2
//! flow control does the rest) and at most one 64 KiB segment is held.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use prost::Message;
use spar_components::crypto::scheme::{self, Opener, SchemeError, Sealer};
use spar_filters::handlers::crypto::{
    CryptoRequest, CryptoResponse, DecryptOptions, EncryptOptions, Subtle, SubtleOp, SubtleResult,
};
use spar_filters::{ApiError, Request, Response};
use spar_proto::common::StreamPayload;
use spar_proto::runtime as pb;
use tokio::sync::mpsc;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status, Streaming};

use super::convert;
use super::dapr::{unexpected, DaprApi, R};

pub type EncryptStream = Pin<Box<dyn Stream<Item = Result<pb::EncryptResponse, Status>> + Send>>;
pub type DecryptStream = Pin<Box<dyn Stream<Item = Result<pb::DecryptResponse, Status>> + Send>>;

/// daprd's wait for the first message of a stream.
const FIRST_CHUNK_TIMEOUT: Duration = Duration::from_secs(5);

const ENCRYPT_ROUTE: &str = "/dapr.proto.runtime.v1.Dapr/EncryptAlpha1";
const DECRYPT_ROUTE: &str = "/dapr.proto.runtime.v1.Dapr/DecryptAlpha1";

fn op_status(e: impl std::fmt::Display) -> Status {
    convert::status(&ApiError::Crypto(e.to_string()))
}

/// A message of either stream: its options are only allowed first.
trait Chunk: Message + Default + Send + 'static {
    fn payload(&mut self) -> Option<StreamPayload>;
    fn has_options(&self) -> bool;
}

impl Chunk for pb::EncryptRequest {
    fn payload(&mut self) -> Option<StreamPayload> {
        self.payload.take()
    }
    fn has_options(&self) -> bool {
        self.options.is_some()
    }
}

impl Chunk for pb::DecryptRequest {
    fn payload(&mut self) -> Option<StreamPayload> {
        self.payload.take()
    }
    fn has_options(&self) -> bool {
        self.options.is_some()
    }
}

async fn first<M: Chunk>(inbound: &mut Streaming<M>) -> Result<M, Status> {
    match tokio::time::timeout(FIRST_CHUNK_TIMEOUT, inbound.message()).await {
        Err(_) => Err(convert::status(&ApiError::BadRequest(
            "error waiting for first message: context deadline exceeded".into(),
        ))),
        Ok(Err(e)) => Err(op_status(format!(
            "error receiving the first message: {}",
            e.message()
        ))),
        Ok(Ok(None)) => Err(op_status("error receiving the first message: EOF")),
        Ok(Ok(Some(m))) => Ok(m),
    }
}

/// The client's chunks, in order: each `seq` must be the next one.
struct Inbound<M: Chunk> {
    stream: Streaming<M>,
    /// The first message's chunk, not yet taken.
    pending: Option<StreamPayload>,
    expect: u64,
}

impl<M: Chunk> Inbound<M> {
    /// The next chunk's bytes; `None` once the client closed its side.
    async fn next(&mut self) -> Result<Option<Vec<u8>>, Status> {
        loop {
            let p = match self.pending.take() {
                Some(p) => p,
                None => match self.stream.message().await {
                    Ok(None) => return Ok(None),
                    Err(e) => {
                        return Err(op_status(format!(
                            "error receiving message: {}",
                            e.message()
                        )))
                    }
                    Ok(Some(mut m)) => {
                        if m.has_options() {
                            return Err(op_status("options found in non-leading message"));
                        }
                        match m.payload() {
                            Some(p) => p,
                            None => continue,
                        }
                    }
                },
            };
            if p.seq != self.expect {
                return Err(op_status(format!(
                    "invalid sequence number received: {} (expected: {})",
                    p.seq, self.expect
                )));
            }
            self.expect += 1;
            return Ok(Some(p.data));
        }
    }
}

/// Sends chunks to the client, numbered from 0. `false` once the client is
/// gone.
struct Outbound<T> {
    tx: mpsc::Sender<Result<T, Status>>,
    seq: u64,
    wrap: fn(StreamPayload) -> T,
}

impl<T> Outbound<T> {
    async fn send(&mut self, data: Vec<u8>) -> bool {
        if data.is_empty() {
            return true;
        }
        let msg = (self.wrap)(StreamPayload {
            data,
            seq: self.seq,
        });
        self.seq += 1;
        self.tx.send(Ok(msg)).await.is_ok()
    }

    async fn fail(&self, s: Status) {
        let _ = self.tx.send(Err(s)).await;
    }
}

/// A segment processor: the sealer or the opener.
trait Segments: Send + 'static {
    fn push(&mut self, data: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), SchemeError>;
    fn finish(self) -> Result<Option<Vec<u8>>, SchemeError>;
}

impl Segments for Sealer {
    fn push(&mut self, data: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), SchemeError> {
        Sealer::push(self, data, &mut |s| out.push(s))
    }
    fn finish(self) -> Result<Option<Vec<u8>>, SchemeError> {
        Ok(Sealer::finish(self))
    }
}

impl Segments for Opener {
    fn push(&mut self, data: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), SchemeError> {
        Opener::push(self, data, &mut |s| out.push(s))
    }
    fn finish(self) -> Result<Option<Vec<u8>>, SchemeError> {
        Opener::finish(self)
    }
}

/// Moves the rest of a stream through `seg`, one chunk at a time.
async fn pump<M: Chunk, T, S: Segments>(
    mut inbound: Inbound<M>,
    mut out: Outbound<T>,
    mut seg: S,
    leftover: Vec<u8>,
) {
    let mut ready = Vec::with_capacity(2);
    let mut chunk = Some(leftover);
    loop {
        if let Some(data) = chunk.take() {
            if let Err(e) = seg.push(&data, &mut ready) {
                return out.fail(op_status(e)).await;
            }
            for s in ready.drain(..) {
                if !out.send(s).await {
                    return;
                }
            }
        }
        match inbound.next().await {
            Ok(Some(data)) => chunk = Some(data),
            Ok(None) => break,
            Err(s) => return out.fail(s).await,
        }
    }
    match seg.finish() {
        Ok(Some(last)) => {
            out.send(last).await;
        }
        Ok(None) => {}
        Err(e) => out.fail(op_status(e)).await,
    }
}

impl DaprApi {
    pub(super) async fn encrypt_stream(
        &self,
        req: GrpcRequest<Streaming<pb::EncryptRequest>>,
    ) -> R<EncryptStream> {
        let (metadata, _, mut stream) = req.into_parts();
        let mut m = first(&mut stream).await?;
        let len = m.encoded_len();
        let typed = match m.options.take() {
            None => Err(ApiError::BadRequest(
                "first message does not contain the required options".into(),
            )),
            Some(o) if o.key_name.is_empty() => Err(ApiError::BadRequest(
                "missing property 'keyName' in the options message".into(),
            )),
            Some(o) if o.key_wrap_algorithm.is_empty() => Err(ApiError::BadRequest(
                "missing property 'keyWrapAlgorithm' in the options message".into(),
            )),
            Some(o) => Ok(Request::Crypto(CryptoRequest::Encrypt {
                opts: EncryptOptions {
                    component: o.component_name,
                    key_name: o.key_name,
                    key_wrap_algorithm: o.key_wrap_algorithm,
                    data_encryption_cipher: o.data_encryption_cipher,
                    omit_decryption_key_name: o.omit_decryption_key_name,
                    decryption_key_name: o.decryption_key_name,
                },
                body: None,
            })),
        };
        let Response::Crypto(r) = self.call_with(ENCRYPT_ROUTE, &metadata, len, typed).await?
        else {
            return Err(unexpected());
        };
        let CryptoResponse::Encrypting { header, sealer } = *r else {
            return Err(unexpected());
        };
        let (tx, rx) = mpsc::channel(2);
        let mut out = Outbound {
            tx,
            seq: 0,
            wrap: |p| pb::EncryptResponse { payload: Some(p) },
        };
        let inbound = Inbound {
            pending: m.payload.take(),
            stream,
            expect: 0,
        };
        tokio::spawn(async move {
            if out.send(header).await {
                pump(inbound, out, sealer, Vec::new()).await;
            }
        });
        Ok(GrpcResponse::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    pub(super) async fn decrypt_stream(
        &self,
        req: GrpcRequest<Streaming<pb::DecryptRequest>>,
    ) -> R<DecryptStream> {
        let (metadata, _, mut stream) = req.into_parts();
        let mut m = first(&mut stream).await?;
        let len = m.encoded_len();
        let typed = match m.options.take() {
            None => Err(ApiError::BadRequest(
                "first message does not contain the required options".into(),
            )),
            Some(o) => Ok(Request::Crypto(CryptoRequest::Decrypt {
                opts: DecryptOptions {
                    component: o.component_name,
                    key_name: o.key_name,
                },
                body: None,
            })),
        };
        let Response::Crypto(r) = self.call_with(DECRYPT_ROUTE, &metadata, len, typed).await?
        else {
            return Err(unexpected());
        };
        let CryptoResponse::Decrypting(dec) = *r else {
            return Err(unexpected());
        };
        let mut inbound = Inbound {
            pending: m.payload.take(),
            stream,
            expect: 0,
        };
        // The header first (at most one segment long): its key is unwrapped
        // before any answer, so a bad header or key fails the call itself.
        let mut buf: Vec<u8> = Vec::new();
        let (header, used) = loop {
            match scheme::parse_header(&buf).map_err(op_status)? {
                Some(h) => break h,
                None => match inbound.next().await? {
                    Some(d) => buf.extend_from_slice(&d),
                    None => return Err(op_status(scheme::incomplete_header(&buf))),
                },
            }
        };
        let opener = dec.open(&header).await.map_err(|e| convert::status(&e))?;
        let leftover = buf.split_off(used);
        let (tx, rx) = mpsc::channel(2);
        let out = Outbound {
            tx,
            seq: 0,
            wrap: |p| pb::DecryptResponse { payload: Some(p) },
        };
        tokio::spawn(pump(inbound, out, opener, leftover));
        Ok(GrpcResponse::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    /// One subtle operation through the chain.
    pub(super) async fn subtle<M: Message>(
        &self,
        route: &'static str,
        req: &GrpcRequest<M>,
        s: Subtle,
    ) -> Result<SubtleResult, Status> {
        match self
            .call(
                route,
                req,
                Ok(Request::Crypto(CryptoRequest::Subtle(Box::new(s)))),
            )
            .await?
        {
            Response::Crypto(r) => match *r {
                CryptoResponse::Subtle(r) => Ok(r),
                _ => Err(unexpected()),
            },
            _ => Err(unexpected()),
        }
    }
}

/// The typed subtle request for each message.
pub(super) fn subtle_get_key(m: &pb::SubtleGetKeyRequest) -> Subtle {
    let mut s = Subtle::new(SubtleOp::GetKey, m.component_name.clone());
    s.key_name = m.name.clone();
    s.format = m.format;
    s
}

pub(super) fn subtle_encrypt(m: &pb::SubtleEncryptRequest) -> Subtle {
    let mut s = Subtle::new(SubtleOp::Encrypt, m.component_name.clone());
    s.key_name = m.key_name.clone();
    s.algorithm = m.algorithm.clone();
    s.data = m.plaintext.clone();
    s.nonce = m.nonce.clone();
    s.associated_data = m.associated_data.clone();
    s
}

pub(super) fn subtle_decrypt(m: &pb::SubtleDecryptRequest) -> Subtle {
    let mut s = Subtle::new(SubtleOp::Decrypt, m.component_name.clone());
    s.key_name = m.key_name.clone();
    s.algorithm = m.algorithm.clone();
    s.data = m.ciphertext.clone();
    s.nonce = m.nonce.clone();
    s.tag = m.tag.clone();
    s.associated_data = m.associated_data.clone();
    s
}

pub(super) fn subtle_wrap(m: &pb::SubtleWrapKeyRequest) -> Subtle {
    let mut s = Subtle::new(SubtleOp::WrapKey, m.component_name.clone());
    s.key_name = m.key_name.clone();
    s.algorithm = m.algorithm.clone();
    s.data = m.plaintext_key.clone();
    s.nonce = m.nonce.clone();
    s.associated_data = m.associated_data.clone();
    s
}

pub(super) fn subtle_unwrap(m: &pb::SubtleUnwrapKeyRequest) -> Subtle {
    let mut s = Subtle::new(SubtleOp::UnwrapKey, m.component_name.clone());
    s.key_name = m.key_name.clone();
    s.algorithm = m.algorithm.clone();
    s.data = m.wrapped_key.clone();
    s.nonce = m.nonce.clone();
    s.tag = m.tag.clone();
    s.associated_data = m.associated_data.clone();
    s
}

pub(super) fn subtle_sign(m: &pb::SubtleSignRequest) -> Subtle {
    let mut s = Subtle::new(SubtleOp::Sign, m.component_name.clone());
    s.key_name = m.key_name.clone();
    s.algorithm = m.algorithm.clone();
    s.data = m.digest.clone();
    s
}

pub(super) fn subtle_verify(m: &pb::SubtleVerifyRequest) -> Subtle {
    let mut s = Subtle::new(SubtleOp::Verify, m.component_name.clone());
    s.key_name = m.key_name.clone();
    s.algorithm = m.algorithm.clone();
    s.data = m.digest.clone();
    s.signature = m.signature.clone();
    s
}
