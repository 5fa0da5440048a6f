//! `scrubPII` for the conversation block, as a filter around its handler:
//! the inputs that ask for it are scrubbed before the component sees them,
//! and the answers when the request asks for it (`crate::pii` finds and
//! replaces). In the chain only while conversation components are loaded;
//! every other call passes it by.

use async_trait::async_trait;

use crate::handlers::conversation::{ConversationRequest, ConversationResponse};
use crate::pii::scrub;
use crate::{ApiResult, Ctx, Filter, Next, Request, Response};

pub struct PiiScrub;

fn scrub_all(texts: &mut [String]) {
    for t in texts {
        *t = scrub(t);
    }
}

/// Scrubs the inputs that ask for it; whether the answers must be.
fn scrub_inputs(req: &mut ConversationRequest) -> bool {
    match req {
        ConversationRequest::Alpha1(r) => {
            for i in r.inputs.iter_mut().filter(|i| i.scrub_pii) {
                i.content = scrub(&i.content);
            }
            r.scrub_pii
        }
        ConversationRequest::Alpha2(r) => {
            for i in r.inputs.iter_mut().filter(|i| i.scrub_pii) {
                for m in &mut i.messages {
                    if let Some(texts) = m.texts_mut() {
                        scrub_all(texts);
                    }
                }
            }
            r.scrub_pii
        }
    }
}

fn scrub_outputs(res: &mut ConversationResponse) {
    match res {
        ConversationResponse::Alpha1 { outputs, .. } => {
            for (text, _) in outputs {
                *text = scrub(text);
            }
        }
        ConversationResponse::Alpha2 { outputs, .. } => {
            for c in outputs.iter_mut().flat_map(|o| o.choices.iter_mut()) {
                c.content = scrub(&c.content);
            }
        }
    }
}

#[async_trait]
impl Filter for PiiScrub {
    fn name(&self) -> &'static str {
        "pii"
    }

    fn skips(&self, _ctx: &Ctx, req: &Request) -> bool {
        !matches!(req, Request::Conversation(_))
    }

    async fn call(&self, ctx: &mut Ctx, req: Request, next: Next<'_>) -> ApiResult {
        let Request::Conversation(mut r) = req else {
            return next.run(ctx, req).await;
        };
        let outputs = scrub_inputs(&mut r);
        let mut res = next.run(ctx, Request::Conversation(r)).await;
        if let (true, Ok(Response::Conversation(c))) = (outputs, &mut res) {
            scrub_outputs(c);
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::conversation::{
        Alpha1Input, Alpha1Request, Alpha2Input, Alpha2Request, InMessage,
    };

    #[test]
    fn inputs_scrubbed_only_where_asked() {
        let mut r = ConversationRequest::Alpha1(Alpha1Request {
            inputs: vec![
                Alpha1Input {
                    content: "mail a@b.io".into(),
                    scrub_pii: true,
                    ..Default::default()
                },
                Alpha1Input {
                    content: "mail c@d.io".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        assert!(!scrub_inputs(&mut r));
        let ConversationRequest::Alpha1(a) = &r else {
            unreachable!()
        };
        assert_eq!(a.inputs[0].content, "mail <EMAIL_ADDRESS>");
        assert_eq!(a.inputs[1].content, "mail c@d.io");

        let mut r = ConversationRequest::Alpha2(Alpha2Request {
            inputs: vec![Alpha2Input {
                messages: vec![
                    InMessage::User {
                        content: vec!["ip 10.0.0.1".into()],
                    },
                    InMessage::Tool {
                        tool_id: None,
                        name: "t".into(),
                        content: vec!["card 4111111111111111".into()],
                    },
                ],
                scrub_pii: true,
            }],
            scrub_pii: true,
            ..Default::default()
        });
        assert!(scrub_inputs(&mut r));
        let ConversationRequest::Alpha2(a) = &mut r else {
            unreachable!()
        };
        assert_eq!(a.inputs[0].messages[0].texts_mut().unwrap()[0], "ip <IP>");
        assert_eq!(
            a.inputs[0].messages[1].texts_mut().unwrap()[0],
            "card <CREDIT_CARD>"
        );
    }
}
