//! The subset of CEL that pub/sub routing rules use (`routes.rules[].match`):
//! `event.<field>…` paths, string / number / bool / null literals, `==`,
//! `!=`, `<`, `<=`, `>`, `>=`, `&&`, `||`, `!` and parentheses. Compiled once
//! per rule at start; evaluated against the CloudEvent as JSON. A path that
//! does not exist makes its comparison false (in CEL it would be an error,
//! which Dapr also treats as "no match").

use std::borrow::Cow;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Lit(Value),
    Path(Vec<String>),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(Box<Expr>, Op, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Dot,
    LParen,
    RParen,
    Not,
    And,
    Or,
    Op(Op),
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '.' => {
                out.push(Tok::Dot);
                i += 1
            }
            '(' => {
                out.push(Tok::LParen);
                i += 1
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1
            }
            '&' if b.get(i + 1) == Some(&b'&') => {
                out.push(Tok::And);
                i += 2
            }
            '|' if b.get(i + 1) == Some(&b'|') => {
                out.push(Tok::Or);
                i += 2
            }
            '=' if b.get(i + 1) == Some(&b'=') => {
                out.push(Tok::Op(Op::Eq));
                i += 2
            }
            '!' if b.get(i + 1) == Some(&b'=') => {
                out.push(Tok::Op(Op::Ne));
                i += 2
            }
            '!' => {
                out.push(Tok::Not);
                i += 1
            }
            '<' | '>' => {
                let eq = b.get(i + 1) == Some(&b'=');
                out.push(Tok::Op(match (c, eq) {
                    ('<', false) => Op::Lt,
                    ('<', true) => Op::Le,
                    ('>', false) => Op::Gt,
                    _ => Op::Ge,
                }));
                i += if eq { 2 } else { 1 };
            }
            '"' | '\'' => {
                let mut j = i + 1;
                let mut v = String::new();
                while j < b.len() && b[j] as char != c {
                    if b[j] == b'\\' && j + 1 < b.len() {
                        j += 1;
                    }
                    let ch = s[j..].chars().next().ok_or("bad string")?;
                    v.push(ch);
                    j += ch.len_utf8();
                }
                if j >= b.len() {
                    return Err(format!("unterminated string at {i}"));
                }
                out.push(Tok::Str(v));
                i = j + 1;
            }
            c if c.is_ascii_digit()
                || (c == '-' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) =>
            {
                let mut j = i + 1;
                while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'.') {
                    j += 1;
                }
                out.push(Tok::Num(
                    s[i..j]
                        .parse()
                        .map_err(|_| format!("bad number {:?}", &s[i..j]))?,
                ));
                i = j;
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut j = i;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'-')
                {
                    j += 1;
                }
                out.push(Tok::Ident(s[i..j].to_string()));
                i = j;
            }
            other => return Err(format!("unexpected {other:?} at {i}")),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }
    fn or(&mut self) -> Result<Expr, String> {
        let mut l = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.next();
            l = Expr::Or(Box::new(l), Box::new(self.and()?));
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<Expr, String> {
        let mut l = self.unary()?;
        while self.peek() == Some(&Tok::And) {
            self.next();
            l = Expr::And(Box::new(l), Box::new(self.unary()?));
        }
        Ok(l)
    }
    fn unary(&mut self) -> Result<Expr, String> {
        if self.peek() == Some(&Tok::Not) {
            self.next();
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        let l = self.atom()?;
        if let Some(Tok::Op(op)) = self.peek().cloned() {
            self.next();
            let r = self.atom()?;
            return Ok(Expr::Cmp(Box::new(l), op, Box::new(r)));
        }
        Ok(l)
    }
    fn atom(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Tok::LParen) => {
                let e = self.or()?;
                match self.next() {
                    Some(Tok::RParen) => Ok(e),
                    _ => Err("missing )".into()),
                }
            }
            Some(Tok::Str(s)) => Ok(Expr::Lit(Value::String(s))),
            Some(Tok::Num(n)) => Ok(Expr::Lit(serde_json::json!(n))),
            Some(Tok::Ident(id)) => match id.as_str() {
                "true" => Ok(Expr::Lit(Value::Bool(true))),
                "false" => Ok(Expr::Lit(Value::Bool(false))),
                "null" => Ok(Expr::Lit(Value::Null)),
                _ => {
                    let mut path = vec![id];
                    while self.peek() == Some(&Tok::Dot) {
                        self.next();
                        match self.next() {
                            Some(Tok::Ident(f)) => path.push(f),
                            _ => return Err("expected a field name after '.'".into()),
                        }
                    }
                    Ok(Expr::Path(path))
                }
            },
            t => Err(format!("unexpected {t:?}")),
        }
    }
}

impl Expr {
    pub fn parse(s: &str) -> Result<Expr, String> {
        let mut p = Parser {
            toks: lex(s)?,
            at: 0,
        };
        let e = p.or()?;
        if p.at != p.toks.len() {
            return Err(format!("unexpected {:?}", p.toks[p.at]));
        }
        Ok(e)
    }

    /// Evaluates against the CloudEvent; the root name is `event`.
    pub fn matches(&self, event: &Value) -> bool {
        self.value(event).is_some_and(|v| *v == Value::Bool(true))
    }

    /// The value of an operand, borrowed from the event or the expression
    /// (no copies of event data on the delivery path).
    fn value<'a>(&'a self, event: &'a Value) -> Option<Cow<'a, Value>> {
        match self {
            Expr::Lit(v) => Some(Cow::Borrowed(v)),
            Expr::Path(p) => {
                let (root, rest) = p.split_first()?;
                if root != "event" {
                    return None;
                }
                let mut cur = event;
                for f in rest {
                    cur = cur.get(f)?;
                }
                Some(Cow::Borrowed(cur))
            }
            Expr::Not(e) => Some(Cow::Owned(Value::Bool(!e.matches(event)))),
            Expr::And(a, b) => Some(Cow::Owned(Value::Bool(
                a.matches(event) && b.matches(event),
            ))),
            Expr::Or(a, b) => Some(Cow::Owned(Value::Bool(
                a.matches(event) || b.matches(event),
            ))),
            Expr::Cmp(a, op, b) => {
                let (a, b) = (a.value(event)?, b.value(event)?);
                let r = match (op, a.as_f64(), b.as_f64()) {
                    (Op::Eq, Some(x), Some(y)) => x == y,
                    (Op::Ne, Some(x), Some(y)) => x != y,
                    (Op::Eq, _, _) => a == b,
                    (Op::Ne, _, _) => a != b,
                    (op, Some(x), Some(y)) => match op {
                        Op::Lt => x < y,
                        Op::Le => x <= y,
                        Op::Gt => x > y,
                        _ => x >= y,
                    },
                    (op, _, _) => match (a.as_str(), b.as_str()) {
                        (Some(x), Some(y)) => match op {
                            Op::Lt => x < y,
                            Op::Le => x <= y,
                            Op::Gt => x > y,
                            _ => x >= y,
                        },
                        _ => return None,
                    },
                };
                Some(Cow::Owned(Value::Bool(r)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn routing_expressions() {
        let ev = json!({"type": "order.created", "data": {"kind": "book", "n": 3, "vip": true}});
        let t = |s: &str| Expr::parse(s).unwrap().matches(&ev);
        assert!(t(r#"event.type == "order.created""#));
        assert!(t(
            "event.type == 'order.created' && event.data.kind != 'car'"
        ));
        assert!(t(
            "event.data.n == 3 && event.data.n > 2 && event.data.n <= 3"
        ));
        assert!(t("event.data.vip == true"));
        assert!(t("!(event.data.kind == 'car') || event.missing == 1"));
        assert!(!t("event.missing == 'x'"));
        assert!(!t("event.missing != 'x'"), "a missing field never matches");
        assert!(t(
            "event.type == 'nope' || (event.data.kind == 'book' && event.data.n == 3.0)"
        ));
        assert!(!t("event.data.kind == 'book' && event.data.n == 4"));
        for bad in [
            "event.type ==",
            "event.type = 'x'",
            "(event.a == 1",
            "event. == 1",
            "'x",
        ] {
            assert!(Expr::parse(bad).is_err(), "{bad}");
        }
    }
}
