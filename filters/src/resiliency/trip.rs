//! A circuit breaker's `trip` expression (`consecutiveFailures > 5`,
//! `requests > 10 && totalFailures > 3`, …) parsed once into a predicate
//! over the breaker's counts.

use std::fmt;

/// The counts of the breaker's current generation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub total_successes: u64,
    pub total_failures: u64,
    pub consecutive_successes: u64,
    pub consecutive_failures: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    Requests,
    TotalSuccesses,
    TotalFailures,
    ConsecutiveSuccesses,
    ConsecutiveFailures,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trip {
    Cmp(Var, Op, u64),
    And(Box<Trip>, Box<Trip>),
    Or(Box<Trip>, Box<Trip>),
}

impl Trip {
    pub fn holds(&self, c: &Counts) -> bool {
        match self {
            Trip::Cmp(v, op, n) => {
                let x = match v {
                    Var::Requests => c.requests,
                    Var::TotalSuccesses => c.total_successes,
                    Var::TotalFailures => c.total_failures,
                    Var::ConsecutiveSuccesses => c.consecutive_successes,
                    Var::ConsecutiveFailures => c.consecutive_failures,
                };
                match op {
                    Op::Gt => x > *n,
                    Op::Ge => x >= *n,
                    Op::Lt => x < *n,
                    Op::Le => x <= *n,
                    Op::Eq => x == *n,
                    Op::Ne => x != *n,
                }
            }
            Trip::And(a, b) => a.holds(c) && b.holds(c),
            Trip::Or(a, b) => a.holds(c) || b.holds(c),
        }
    }

    pub fn parse(s: &str) -> Result<Trip, String> {
        let toks = lex(s)?;
        let mut p = Parser { toks, at: 0 };
        let t = p.or()?;
        if p.at != p.toks.len() {
            return Err(format!("unexpected {} in {s:?}", p.toks[p.at]));
        }
        Ok(t)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Num(u64),
    Op(Op),
    And,
    Or,
    Open,
    Close,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "{s:?}"),
            Tok::Num(n) => write!(f, "{n}"),
            Tok::Op(o) => write!(f, "{o:?}"),
            Tok::And => f.write_str("&&"),
            Tok::Or => f.write_str("||"),
            Tok::Open => f.write_str("("),
            Tok::Close => f.write_str(")"),
        }
    }
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let two = |x: u8| b.get(i + 1) == Some(&x);
        match c {
            b' ' | b'\t' | b'\n' => i += 1,
            b'(' => (out.push(Tok::Open), i += 1).1,
            b')' => (out.push(Tok::Close), i += 1).1,
            b'&' if two(b'&') => (out.push(Tok::And), i += 2).1,
            b'|' if two(b'|') => (out.push(Tok::Or), i += 2).1,
            b'>' if two(b'=') => (out.push(Tok::Op(Op::Ge)), i += 2).1,
            b'<' if two(b'=') => (out.push(Tok::Op(Op::Le)), i += 2).1,
            b'=' if two(b'=') => (out.push(Tok::Op(Op::Eq)), i += 2).1,
            b'!' if two(b'=') => (out.push(Tok::Op(Op::Ne)), i += 2).1,
            b'>' => (out.push(Tok::Op(Op::Gt)), i += 1).1,
            b'<' => (out.push(Tok::Op(Op::Lt)), i += 1).1,
            b'0'..=b'9' => {
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let n = s[start..i]
                    .parse()
                    .map_err(|_| format!("number {:?} too large", &s[start..i]))?;
                out.push(Tok::Num(n));
            }
            c if c.is_ascii_alphabetic() => {
                let start = i;
                while i < b.len() && b[i].is_ascii_alphanumeric() {
                    i += 1;
                }
                out.push(Tok::Ident(s[start..i].to_string()));
            }
            _ => return Err(format!("unexpected character {:?}", c as char)),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn or(&mut self) -> Result<Trip, String> {
        let mut l = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.at += 1;
            l = Trip::Or(Box::new(l), Box::new(self.and()?));
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<Trip, String> {
        let mut l = self.atom()?;
        while self.peek() == Some(&Tok::And) {
            self.at += 1;
            l = Trip::And(Box::new(l), Box::new(self.atom()?));
        }
        Ok(l)
    }

    fn atom(&mut self) -> Result<Trip, String> {
        match self.next() {
            Some(Tok::Open) => {
                let t = self.or()?;
                match self.next() {
                    Some(Tok::Close) => Ok(t),
                    _ => Err("missing )".into()),
                }
            }
            Some(Tok::Ident(name)) => {
                let var = match name.as_str() {
                    "requests" => Var::Requests,
                    "totalSuccesses" => Var::TotalSuccesses,
                    "totalFailures" => Var::TotalFailures,
                    "consecutiveSuccesses" => Var::ConsecutiveSuccesses,
                    "consecutiveFailures" => Var::ConsecutiveFailures,
                    o => return Err(format!("unknown count {o:?} (requests, totalSuccesses, totalFailures, consecutiveSuccesses, consecutiveFailures)")),
                };
                let Some(Tok::Op(op)) = self.next() else {
                    return Err(format!("{name} needs a comparison (>, >=, <, <=, ==, !=)"));
                };
                let Some(Tok::Num(n)) = self.next() else {
                    return Err(format!("{name} must be compared with a whole number"));
                };
                Ok(Trip::Cmp(var, op, n))
            }
            Some(t) => Err(format!("unexpected {t}")),
            None => Err("the expression is incomplete".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_evaluates() {
        let t = Trip::parse("consecutiveFailures > 5").unwrap();
        let mut c = Counts {
            consecutive_failures: 5,
            ..Default::default()
        };
        assert!(!t.holds(&c));
        c.consecutive_failures = 6;
        assert!(t.holds(&c));
        let t = Trip::parse("(requests >= 10 && totalFailures > 3) || consecutiveFailures == 2")
            .unwrap();
        assert!(t.holds(&Counts {
            consecutive_failures: 2,
            ..Default::default()
        }));
        assert!(t.holds(&Counts {
            requests: 10,
            total_failures: 4,
            ..Default::default()
        }));
        assert!(!t.holds(&Counts {
            requests: 9,
            total_failures: 4,
            ..Default::default()
        }));
        for bad in [
            "",
            "failures > 1",
            "consecutiveFailures >",
            "consecutiveFailures > x",
            "(requests > 1",
            "requests > 1 &&",
            "requests = 1",
            "requests > 1 extra",
        ] {
            assert!(Trip::parse(bad).is_err(), "{bad:?}");
        }
    }
}
