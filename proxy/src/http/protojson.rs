//! JSON bodies read the way daprd's universal HTTP handlers read them
//! (protojson): a field by its JSON name or its proto name, unknown fields
//! ignored, `null` as unset, 32/64-bit integers as numbers or as strings.
//! A body that does not fit is `ERR_MALFORMED_REQUEST`.

use serde::de::{self, Deserializer};
use serde::Deserialize;
use spar_filters::ApiError;

/// The body as `T`; an empty body is every field unset, as in daprd.
pub fn parse<T: for<'a> Deserialize<'a> + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::MalformedRequest(e.to_string()))
}

/// A string field; `null` is "".
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// An `int32` field: a number without a fraction, or such a number in a
/// string; `null` is 0.
pub fn int32<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        I(i64),
        F(f64),
        S(String),
    }
    let n = match Option::<N>::deserialize(d)? {
        None => return Ok(0),
        Some(N::I(i)) => i as f64,
        Some(N::F(f)) => f,
        Some(N::S(s)) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| de::Error::custom(format!("invalid value for int32: {s:?}")))?,
    };
    if n.fract() != 0.0 || n < i32::MIN as f64 || n > i32::MAX as f64 {
        return Err(de::Error::custom(format!("invalid value for int32: {n}")));
    }
    Ok(n as i32)
}

/// A `bool` field; `null` is unset.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Option::<bool>::deserialize(d)
}

/// A `double` field: a number, or a number (or `NaN`, `Infinity`) in a
/// string; `null` is unset.
pub fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        F(f64),
        S(String),
    }
    match Option::<N>::deserialize(d)? {
        None => Ok(None),
        Some(N::F(f)) => Ok(Some(f)),
        Some(N::S(s)) => s
            .trim()
            .parse::<f64>()
            .map(Some)
            .map_err(|_| de::Error::custom(format!("invalid value for double: {s:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Default, Debug)]
    #[serde(default)]
    struct T {
        #[serde(alias = "the_name", deserialize_with = "string")]
        name: String,
        #[serde(deserialize_with = "int32")]
        n: i32,
    }

    #[test]
    fn reads_as_protojson() {
        let t: T = parse(br#"{"the_name":"a","n":"5","extra":[1]}"#).unwrap();
        assert_eq!((t.name.as_str(), t.n), ("a", 5));
        let t: T = parse(br#"{"name":null,"n":7.0}"#).unwrap();
        assert_eq!((t.name.as_str(), t.n), ("", 7));
        let t: T = parse(b"").unwrap();
        assert_eq!(t.n, 0);
        for bad in [
            &br#"{"name":5}"#[..],
            br#"{"n":1.5}"#,
            br#"{"n":"x"}"#,
            br#"{"n":9999999999}"#,
            b"[1]",
            b"{oops",
        ] {
            assert!(parse::<T>(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
