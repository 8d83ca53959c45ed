//! A request's parameters from its query string and body (spec §1.2): gzip and bzip2 bodies,
//! urlencoded and multipart forms, the body winning over the query.
//!
//! In two steps, so that a request without a valid key costs little: `Form::read` finds the
//! form (decompressing the body, within the size and memory limits), `Form::plain_value` finds
//! `api_key` by scanning the raw pairs, and only then `Form::decode` builds the parameter tree.

use crate::http::memory::{OverBudget, Reservation};
use crate::http::wire::HttpRequest;
use crate::params::{
    MAX_PARAMS, ParamError, Params, key_target, percent_decode, percent_decode_into,
};
use std::borrow::Cow;
use std::io::Read;

/// What decoding one parameter costs beyond its bytes, at most (two tree nodes), used to hold
/// the memory budget for a form before decoding it.
const BYTES_PER_PARAM: usize = 2 * 96;

/// Why a request's parameters could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// The body, once decompressed, is larger than allowed, or has too many parameters (413).
    TooLarge(String),
    /// The server holds too many request bytes already (503 `retry_later`).
    OverBudget,
    /// A malformed body or parameter; the text says what (`invalid_arg`).
    Invalid(String),
}

impl From<ParamError> for BodyError {
    fn from(error: ParamError) -> BodyError {
        match error {
            ParamError::TooMany => BodyError::TooLarge(error.to_string()),
            other => BodyError::Invalid(other.to_string()),
        }
    }
}

impl From<OverBudget> for BodyError {
    fn from(_: OverBudget) -> BodyError {
        BodyError::OverBudget
    }
}

/// A request's form, found but not decoded: the query, and the body as a form once
/// decompressed (or no body form at all, for a content type that carries no parameters).
pub struct Form<'a> {
    query: &'a [u8],
    body: Cow<'a, [u8]>,
    kind: BodyKind,
}

enum BodyKind {
    None,
    Urlencoded,
    Multipart { boundary: String },
}

impl<'a> Form<'a> {
    /// Finds the form of `request`; `max_body` bounds decompressed bodies too, and `memory`
    /// (the body's part of the budget) grows to hold them.
    pub fn read(
        request: &'a HttpRequest,
        max_body: usize,
        memory: &mut Reservation,
    ) -> Result<Form<'a>, BodyError> {
        let query = request
            .target
            .split_once('?')
            .map_or("", |(_, q)| q)
            .as_bytes();
        let mut form = Form {
            query,
            body: Cow::Borrowed(&request.body),
            kind: BodyKind::None,
        };
        if request.body.is_empty() {
            return Ok(form);
        }
        match request.header("content-encoding").map(str::trim) {
            None | Some("") => {}
            Some(coding) if coding.eq_ignore_ascii_case("identity") => {}
            Some(coding)
                if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") =>
            {
                form.body = Cow::Owned(inflate(
                    flate2::bufread::GzDecoder::new(&request.body[..]),
                    max_body,
                    memory,
                    "gzip",
                )?);
            }
            Some(other) => {
                return Err(BodyError::Invalid(format!(
                    "Content-Encoding \"{other}\" is not supported (gzip only)"
                )));
            }
        }
        if plain_value(query, "request_compression").as_deref() == Some("bzip2") {
            let compressed = std::mem::take(&mut form.body);
            form.body = Cow::Owned(inflate(
                bzip2::bufread::BzDecoder::new(&compressed[..]),
                max_body,
                memory,
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
        form.kind = match media_type.as_str() {
            // No type at all is read as a form: that is what a bare `curl --data-binary` sends.
            "application/x-www-form-urlencoded" | "" => BodyKind::Urlencoded,
            "multipart/form-data" => BodyKind::Multipart {
                boundary: multipart_boundary(content_type)?,
            },
            // Any other type (one client sends a junk JSON object) carries no parameters.
            _ => BodyKind::None,
        };
        Ok(form)
    }

    /// The plain value a top-level parameter will have once decoded (the body winning over
    /// the query), found without decoding anything else; None when absent, an array, or not
    /// UTF-8.
    pub fn plain_value(&self, name: &str) -> Option<String> {
        let in_body = match &self.kind {
            BodyKind::None => None,
            BodyKind::Urlencoded => last_pair(urlencoded_pairs(&self.body, name), name, true),
            BodyKind::Multipart { boundary } => {
                let parts = multipart_parts(&self.body, boundary)
                    .map_while(Result::ok)
                    .map(|(key, value)| (Cow::Owned(key.into_bytes()), Cow::Borrowed(value)));
                last_pair(parts, name, false)
            }
        };
        match in_body {
            Some(found) => found,
            None => plain_value(self.query, name),
        }
    }

    /// Every parameter, with `memory` held for the tree first. With `import_rows`, an
    /// urlencoded body's `data` cells are read as rows (`Params::from_urlencoded_rows`).
    pub fn decode(self, memory: &mut Reservation, import_rows: bool) -> Result<Params, BodyError> {
        let pairs = memchr::memchr_iter(b'&', self.query).count()
            + match &self.kind {
                BodyKind::None => 0,
                BodyKind::Urlencoded => memchr::memchr_iter(b'&', &self.body).count() + 1,
                BodyKind::Multipart { boundary } => {
                    memchr::memmem::find_iter(&self.body, boundary.as_bytes()).count()
                }
            };
        memory.grow(
            self.query.len() + self.body.len() + pairs.min(MAX_PARAMS + 1) * BYTES_PER_PARAM,
        )?;
        let mut params = Params::from_urlencoded(self.query)?;
        let body_params = match &self.kind {
            BodyKind::None => return Ok(params),
            BodyKind::Urlencoded if import_rows => Params::from_urlencoded_rows(&self.body)?,
            BodyKind::Urlencoded => Params::from_urlencoded(&self.body)?,
            BodyKind::Multipart { boundary } => {
                let mut body_params = Params::default();
                for part in multipart_parts(&self.body, boundary) {
                    let (name, value) = part?;
                    let value = String::from_utf8(value.to_vec()).map_err(|_| {
                        BodyError::Invalid(format!("multipart part \"{name}\" is not valid UTF-8"))
                    })?;
                    body_params.insert(&name, value)?;
                }
                body_params
            }
        };
        params.overlay(body_params);
        Ok(params)
    }
}

/// Reads every parameter of the request at once (tests and fuzzing; the server reads the key
/// first, see `routes`).
pub fn request_params(request: &HttpRequest, max_body: usize) -> Result<Params, BodyError> {
    let mut memory = Reservation::default();
    Form::read(request, max_body, &mut memory)?.decode(&mut memory, false)
}

/// The plain value of `name` in an urlencoded string, without decoding the rest.
fn plain_value(form: &[u8], name: &str) -> Option<String> {
    last_pair(urlencoded_pairs(form, name), name, true).flatten()
}

/// The raw key and value of each pair of an urlencoded string that may name top-level `name`:
/// a pair whose first byte cannot begin it (neither its first byte nor `%` or `+`) is passed
/// over before its key is even found (most of an import's thousands of pairs).
fn urlencoded_pairs<'a>(
    form: &'a [u8],
    name: &str,
) -> impl Iterator<Item = (Cow<'a, [u8]>, Cow<'a, [u8]>)> {
    let mut start = 0;
    memchr::memchr_iter(b'&', form)
        .chain(std::iter::once(form.len()))
        .map(move |end| {
            let pair = &form[start..end];
            start = end + 1;
            pair
        })
        .filter(move |pair| !pair.is_empty() && may_begin(pair, name))
        .map(|pair| match memchr::memchr(b'=', pair) {
            Some(at) => (Cow::Borrowed(&pair[..at]), Cow::Borrowed(&pair[at + 1..])),
            None => (Cow::Borrowed(pair), Cow::Borrowed(&b""[..])),
        })
}

/// What the last pair whose key names top-level `name` makes of it, as `Params::insert` would:
/// None when no pair names it; Some(None) when the last one makes it an array or is not UTF-8.
/// A key is percent-decoded (into one reused buffer, when `percent_encoded`) only if its plain
/// prefix may name `name` (`may_name`); a value only when its key matches.
fn last_pair<'a>(
    pairs: impl Iterator<Item = (Cow<'a, [u8]>, Cow<'a, [u8]>)>,
    name: &str,
    percent_encoded: bool,
) -> Option<Option<String>> {
    let mut found = None;
    let mut decoded = Vec::new();
    for (raw_key, raw_value) in pairs {
        if !may_name(&raw_key, name) {
            continue;
        }
        let key = if percent_encoded {
            decoded.clear();
            percent_decode_into(&raw_key, &mut decoded);
            &decoded[..]
        } else {
            &raw_key[..]
        };
        let Ok(key) = std::str::from_utf8(key) else {
            continue;
        };
        let (target, is_array) = key_target(key);
        if target == name {
            found = Some(match (is_array, percent_encoded) {
                (true, _) => None,
                (false, true) => percent_decode(&raw_value).ok(),
                (false, false) => String::from_utf8(raw_value.into_owned()).ok(),
            });
        }
    }
    found
}

/// Whether raw bytes can begin a key naming `name` by their first byte alone: it is `name`'s
/// own, or an escape (`%`, `+`) that may decode to it. Most keys are told apart this way
/// (`data[..]` from `api_key`). Anything may begin an empty name; nothing else an empty key.
fn may_begin(raw: &[u8], name: &str) -> bool {
    match (raw.first(), name.as_bytes().first()) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(&first), Some(&wanted)) => first == wanted || first == b'%' || first == b'+',
    }
}

/// Whether a raw key can decode to a key whose top-level name is `name` (which has no `[`,
/// `%` or `+`), judged by its bytes before the first `%`, `+` or `[`: they decode to
/// themselves, so they must begin `name`, and they are all of it when a `[` or the end follows.
/// Looking up the key of an import call no longer percent-decodes every one of its thousands
/// of `data[i][j]` keys (a fifth of the call's time outside the writer).
fn may_name(raw_key: &[u8], name: &str) -> bool {
    if !may_begin(raw_key, name) {
        return false;
    }
    let literal = raw_key
        .iter()
        .position(|b| matches!(b, b'%' | b'+' | b'['))
        .unwrap_or(raw_key.len());
    match raw_key.get(literal) {
        None | Some(b'[') => &raw_key[..literal] == name.as_bytes(),
        Some(_) => name.as_bytes().starts_with(&raw_key[..literal]),
    }
}

/// Decompresses one stream (what real clients send; decoding stream after concatenated
/// stream cost seconds for a few megabytes), refusing output past `limit` and any bytes after
/// the stream, and holding the budget for the output as it grows.
fn inflate<R: std::io::BufRead>(
    mut decoder: impl Read + IntoInner<R>,
    limit: usize,
    memory: &mut Reservation,
    name: &str,
) -> Result<Vec<u8>, BodyError> {
    const FIRST: usize = 64 * 1024;
    let held_before = memory.amount();
    let mut out: Vec<u8> = Vec::new();
    loop {
        // The budget is held for the next allocation before it is made; growth doubles, so
        // a 32 MiB body costs a handful of copies.
        let capacity = (out.len() * 2).max(FIRST).min(limit + 1);
        memory.resize(held_before + capacity)?;
        out.reserve_exact(capacity - out.len());
        let room = (capacity - out.len()) as u64;
        let read = (&mut decoder)
            .take(room)
            .read_to_end(&mut out)
            .map_err(|e| BodyError::Invalid(format!("the body is not valid {name}: {e}")))?;
        if out.len() > limit {
            return Err(BodyError::TooLarge(format!(
                "the body is larger than {} MiB once decompressed",
                limit >> 20
            )));
        }
        if read == 0 || (read as u64) < room {
            break;
        }
    }
    let mut rest = decoder.into_inner();
    if !rest.fill_buf().map(|b| b.is_empty()).unwrap_or(true) {
        return Err(BodyError::Invalid(format!(
            "the body is not one {name} stream (bytes follow its end)"
        )));
    }
    Ok(out)
}

/// Decoders that give back their input once done, to check that nothing follows the stream.
trait IntoInner<R> {
    fn into_inner(self) -> R;
}

impl<R: std::io::BufRead> IntoInner<R> for flate2::bufread::GzDecoder<R> {
    fn into_inner(self) -> R {
        flate2::bufread::GzDecoder::into_inner(self)
    }
}

impl<R: std::io::BufRead> IntoInner<R> for bzip2::bufread::BzDecoder<R> {
    fn into_inner(self) -> R {
        bzip2::bufread::BzDecoder::into_inner(self)
    }
}

fn multipart_boundary(content_type: &str) -> Result<String, BodyError> {
    content_type
        .split(';')
        .filter_map(|piece| piece.trim().split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, value)| value.trim().trim_matches('"').to_string())
        .filter(|b| !b.is_empty())
        .ok_or_else(|| BodyError::Invalid("multipart/form-data without a boundary".into()))
}

/// The named parts of a `multipart/form-data` body, in order, found as they are walked: a body
/// of millions of tiny parts is refused at `MAX_PARAMS` without first listing them all.
fn multipart_parts<'b>(
    body: &'b [u8],
    boundary: &str,
) -> impl Iterator<Item = Result<(String, &'b [u8]), BodyError>> {
    let delimiter = format!("--{boundary}");
    let finder = memchr::memmem::Finder::new(delimiter.as_bytes()).into_owned();
    let mut current = finder.find(body);
    let mut failed = current
        .is_none()
        .then(|| BodyError::Invalid("multipart body without its boundary".into()));
    let mut parts = 0usize;
    std::iter::from_fn(move || {
        if let Some(error) = failed.take() {
            return Some(Err(error));
        }
        loop {
            let start = current? + finder.needle().len();
            let end = start + finder.find(&body[start..])?;
            current = Some(end);
            parts += 1;
            if parts > MAX_PARAMS {
                current = None;
                return Some(Err(ParamError::TooMany.into()));
            }
            let part = &body[start..end];
            let part = part
                .strip_prefix(b"\r\n")
                .or_else(|| part.strip_prefix(b"\n"))
                .unwrap_or(part);
            let part = part
                .strip_suffix(b"\r\n")
                .or_else(|| part.strip_suffix(b"\n"))
                .unwrap_or(part);
            let (head, value) = match split_part(part) {
                Ok(split) => split,
                Err(error) => {
                    current = None;
                    return Some(Err(error));
                }
            };
            if let Some(name) = part_name(head) {
                return Some(Ok((name, value)));
            }
        }
    })
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

/// The parameters of a request the journal kept as it arrived (`journal::RecordedRequest`),
/// decoded as they were when it was answered; None if they no longer decode.
pub fn decode_recorded(recorded: &crate::journal::RecordedRequest) -> Option<Params> {
    let request = HttpRequest {
        method: "POST".into(),
        target: recorded.target.clone(),
        headers: recorded.headers.clone(),
        body: recorded.body.clone(),
        memory: Reservation::default(),
        peer: None,
    };
    let mut memory = Reservation::default();
    // The body was within the server's limit when it arrived; decompressed, it was too.
    let form = Form::read(
        &request,
        crate::http::wire::Limits::default().max_body,
        &mut memory,
    )
    .ok()?;
    form.decode(&mut memory, false).ok()
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
            memory: Reservation::default(),
            peer: None,
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
            Err(BodyError::TooLarge(_))
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

    #[test]
    fn the_key_found_before_decoding_is_the_decoded_key() {
        let bodies: [&[u8]; 9] = [
            b"data%5B0%5D=x&api_key=k1&data%5B1%5D=y",
            b"%61pi_key=k2",
            b"api%5Fkey=k3",
            b"api_key=k1&api_key%5B0%5D=k4",
            b"api_key=k1&api_key[=k5",
            b"api_key=k1&api_key[0=k6",
            b"api_key+=k7&api_keyx=k8",
            b"ap%69_key=k9&api=x&api_key_=y",
            b"api_key[]=k10&api_key=k11",
        ];
        let memory = &mut Reservation::default();
        for body in bodies {
            let request = request("/x", &[FORM], body);
            let form = Form::read(&request, 10_000, memory).unwrap();
            let plain = form.plain_value("api_key");
            let decoded = form.decode(memory, false).unwrap();
            assert_eq!(
                plain.as_deref(),
                decoded.value("api_key"),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
