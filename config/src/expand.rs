//! What daprd does to `--config` files before reading them: environment
//! references expanded as Go's `os.ExpandEnv` does, and several files laid
//! over one another.

/// `$NAME` and `${NAME}` replaced by the variable's value (empty when
/// unset), with Go's rules: a name is letters, digits and `_`, or one of
/// the shell's special characters; `$` before anything else stays; a
/// malformed `${…` is dropped.
pub fn expand_env(s: &str) -> String {
    expand(s, |name| std::env::var(name).unwrap_or_default())
}

fn special(c: u8) -> bool {
    matches!(
        c,
        b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-' | b'0'..=b'9'
    )
}

fn name_char(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphanumeric()
}

/// The name after a `$` and how many bytes it spans ("" with a width:
/// malformed, dropped; "" with 0: no name, the `$` stays).
fn shell_name(s: &[u8]) -> (&[u8], usize) {
    if s[0] == b'{' {
        if s.len() > 2 && special(s[1]) && s[2] == b'}' {
            return (&s[1..2], 3);
        }
        return match s.iter().skip(1).position(|&c| c == b'}') {
            Some(0) => (&[], 2),
            Some(i) => (&s[1..=i], i + 2),
            None => (&[], 1),
        };
    }
    if special(s[0]) {
        return (&s[..1], 1);
    }
    let n = s.iter().take_while(|&&c| name_char(c)).count();
    (&s[..n], n)
}

fn expand(s: &str, value: impl Fn(&str) -> String) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let (mut i, mut j) = (0, 0);
    while j < b.len() {
        if b[j] == b'$' && j + 1 < b.len() {
            out.push_str(&s[i..j]);
            let (name, w) = shell_name(&b[j + 1..]);
            if name.is_empty() && w == 0 {
                out.push('$');
            } else if !name.is_empty() {
                // Names are ASCII, so this slice is on char boundaries.
                out.push_str(&value(std::str::from_utf8(name).unwrap_or_default()));
            }
            j += w;
            i = j + 1;
        }
        j += 1;
    }
    out.push_str(&s[i.min(s.len())..]);
    out
}

/// Lays `top` over `base`: mappings merge key by key, anything else is
/// replaced (as decoding several files into one Go struct does).
pub fn merge(base: &mut serde_yaml::Value, top: serde_yaml::Value) {
    use serde_yaml::Value;
    match (base, top) {
        (Value::Mapping(b), Value::Mapping(t)) => {
            for (k, v) in t {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, t) => *b = t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x(s: &str) -> String {
        expand(s, |n| match n {
            "HOST" => "redis".into(),
            "1" => "one".into(),
            _ => String::new(),
        })
    }

    #[test]
    fn go_expand_rules() {
        assert_eq!(x("a $HOST b"), "a redis b");
        assert_eq!(x("${HOST}:6379"), "redis:6379");
        assert_eq!(x("$HOSTX"), "");
        assert_eq!(x("${NOPE}x"), "x");
        assert_eq!(x("$1$"), "one$");
        assert_eq!(x("cost: 5$ !"), "cost: 5$ !");
        assert_eq!(x("${}z"), "z");
        assert_eq!(x("a${HOST"), "aHOST");
        assert_eq!(x("é$HOSTé"), "éredisé");
        assert_eq!(x("plain"), "plain");
    }

    #[test]
    fn merge_is_deep_for_mappings() {
        let mut a: serde_yaml::Value =
            serde_yaml::from_str("spec: {tracing: {samplingRate: '1'}, features: [a]}").unwrap();
        let b: serde_yaml::Value =
            serde_yaml::from_str("spec: {metric: {enabled: false}, features: [b]}").unwrap();
        merge(&mut a, b);
        let want: serde_yaml::Value = serde_yaml::from_str(
            "spec: {tracing: {samplingRate: '1'}, features: [b], metric: {enabled: false}}",
        )
        .unwrap();
        assert_eq!(a, want);
    }
}
