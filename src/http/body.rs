//! A request's parameters from its query string and body (spec §1.2): gzip and bzip2 bodies,
//! urlencoded and multipart forms, the body winning over the query.

use crate::http::wire::HttpRequest;
use crate::params::{ParamError, Params};
use std::borrow::Cow;
use std::io::Read;

/// Why a request's parameters could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// The body, once decompressed, is larger than allowed (HTTP 413).
    TooLarge,
    /// A malformed body or parameter; the text says what (`invalid_arg`).
    Invalid(String),
}

impl From<ParamError> for BodyError {
    fn from(error: ParamError) -> BodyError {
        BodyError::Invalid(error.to_string())
    }
}

/// Reads every parameter of the request; `max_body` bounds decompressed bodies too.
pub fn request_params(request: &HttpRequest, max_body: usize) -> Result<Params, BodyError> {
    let query = request.target.split_once('?').map_or("", |(_, q)| q);
    let mut params = Params::from_urlencoded(query.as_bytes())?;
    if request.body.is_empty() {
        return Ok(params);
    }
    // Borrowed as it came unless it has to be decompressed.
    let mut body: Cow<[u8]> = match request.header("content-encoding").map(str::trim) {
        None | Some("") => Cow::Borrowed(&request.body),
        Some(coding) if coding.eq_ignore_ascii_case("identity") => Cow::Borrowed(&request.body),
        Some(coding)
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") =>
        {
            Cow::Owned(inflate(
                flate2::read::MultiGzDecoder::new(&request.body[..]),
                max_body,
                "gzip",
            )?)
        }
        Some(other) => {
            return Err(BodyError::Invalid(format!(
                "Content-Encoding \"{other}\" is not supported (gzip only)"
            )));
        }
    };
    if params.value("request_compression") == Some("bzip2") {
        body = Cow::Owned(inflate(
            bzip2::read::MultiBzDecoder::new(&body[..]),
            max_body,
            "bzip2",
        )?);
    }
    let content_type = request.header("content-type").unwrap_or_default();
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let body_params = match media_type.as_str() {
        // No type at all is read as a form: that is what a bare `curl --data-binary` sends.
        "application/x-www-form-urlencoded" | "" => Params::from_urlencoded(&body)?,
        "multipart/form-data" => multipart_params(&body, content_type)?,
        // Any other type (one client sends a junk JSON object) carries no parameters.
        _ => return Ok(params),
    };
    params.overlay(body_params);
    Ok(params)
}

/// Decompresses, refusing output past `limit` so that a small bomb cannot fill memory.
fn inflate(decoder: impl Read, limit: usize, name: &str) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| BodyError::Invalid(format!("the body is not valid {name}: {e}")))?;
    if out.len() > limit {
        return Err(BodyError::TooLarge);
    }
    Ok(out)
}

/// Reads `multipart/form-data`: every part is a parameter named by its Content-Disposition.
fn multipart_params(body: &[u8], content_type: &str) -> Result<Params, BodyError> {
    let boundary = content_type
        .split(';')
        .filter_map(|piece| piece.trim().split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, value)| value.trim().trim_matches('"').to_string())
        .filter(|b| !b.is_empty())
        .ok_or_else(|| BodyError::Invalid("multipart/form-data without a boundary".into()))?;
    let delimiter = format!("--{boundary}");
    let finder = memchr::memmem::Finder::new(delimiter.as_bytes());
    let mut params = Params::default();
    let starts: Vec<usize> = finder.find_iter(body).collect();
    for window in starts.windows(2) {
        let part = &body[window[0] + delimiter.len()..window[1]];
        let part = part
            .strip_prefix(b"\r\n")
            .or_else(|| part.strip_prefix(b"\n"))
            .unwrap_or(part);
        let part = part
            .strip_suffix(b"\r\n")
            .or_else(|| part.strip_suffix(b"\n"))
            .unwrap_or(part);
        let (head, value) = split_part(part)?;
        let Some(name) = part_name(head) else {
            continue;
        };
        let value = String::from_utf8(value.to_vec()).map_err(|_| {
            BodyError::Invalid(format!("multipart part \"{name}\" is not valid UTF-8"))
        })?;
        params.insert(&name, value)?;
    }
    if starts.is_empty() {
        return Err(BodyError::Invalid(
            "multipart body without its boundary".into(),
        ));
    }
    Ok(params)
}

fn split_part(part: &[u8]) -> Result<(&str, &[u8]), BodyError> {
    let (head_len, gap) = match memchr::memmem::find(part, b"\r\n\r\n") {
        Some(at) => (at, 4),
        None => match memchr::memmem::find(part, b"\n\n") {
            Some(at) => (at, 2),
            None => return Err(BodyError::Invalid("multipart part without headers".into())),
        },
    };
    let head = std::str::from_utf8(&part[..head_len])
        .map_err(|_| BodyError::Invalid("multipart headers are not valid UTF-8".into()))?;
    Ok((head, &part[head_len + gap..]))
}

/// The `name` of a part's `Content-Disposition: form-data; name="..."`.
fn part_name(head: &str) -> Option<String> {
    let disposition = head.lines().find(|line| {
        line.to_ascii_lowercase()
            .starts_with("content-disposition:")
    })?;
    disposition.split(';').skip(1).find_map(|piece| {
        let (key, value) = piece.trim().split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("name")
            .then(|| value.trim().trim_matches('"').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn request(target: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpRequest {
        HttpRequest {
            method: "POST".into(),
            target: target.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        }
    }

    const FORM: (&str, &str) = (
        "Content-Type",
        "application/x-www-form-urlencoded; charset=UTF-8",
    );

    #[test]
    fn body_wins_over_query() {
        let params = request_params(&request("/x?a=1&b=2", &[FORM], b"a=3"), 1000).unwrap();
        assert_eq!(params.value("a"), Some("3"));
        assert_eq!(params.value("b"), Some("2"));
    }

    #[test]
    fn other_content_types_are_ignored() {
        let junk = request(
            "/x?a=1",
            &[("Content-Type", "application/json")],
            b"{\"a\":2}",
        );
        assert_eq!(request_params(&junk, 1000).unwrap().value("a"), Some("1"));
    }

    #[test]
    fn compressed_bodies() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"a=gz").unwrap();
        let gz = gz.finish().unwrap();
        let gzipped = request("/x", &[FORM, ("Content-Encoding", "gzip")], &gz);
        assert_eq!(
            request_params(&gzipped, 1000).unwrap().value("a"),
            Some("gz")
        );

        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        bz.write_all(b"a=bz").unwrap();
        let bz = bz.finish().unwrap();
        let bzipped = request("/x?request_compression=bzip2", &[FORM], &bz);
        assert_eq!(
            request_params(&bzipped, 1000).unwrap().value("a"),
            Some("bz")
        );

        let broken = request("/x?request_compression=bzip2", &[FORM], b"a=plain");
        assert!(matches!(
            request_params(&broken, 1000),
            Err(BodyError::Invalid(_))
        ));
        assert!(matches!(
            request_params(&gzipped, 2),
            Err(BodyError::TooLarge)
        ));
    }

    #[test]
    fn multipart_forms() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"api_key\"\r\n\r\nk1\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"field_names[0]\"\r\n\r\nemail\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"data[0][0]\"\r\n\r\na@b.cd\r\n--XyZ--\r\n";
        let multipart = request(
            "/x",
            &[("Content-Type", "multipart/form-data; boundary=XyZ")],
            body,
        );
        let params = request_params(&multipart, 10_000).unwrap();
        assert_eq!(params.value("api_key"), Some("k1"));
        assert!(params.get("data").and_then(|d| d.as_array()).is_some());
        let no_boundary = request("/x", &[("Content-Type", "multipart/form-data")], body);
        assert!(matches!(
            request_params(&no_boundary, 10_000),
            Err(BodyError::Invalid(_))
        ));
    }
}
