//! The body decoders on any bytes, through each compression wrapper and content type: they
//! answer parameters or an error, never panic; and the key found before decoding (`Form::
//! plain_value`, which the server authenticates with) is the key the decoded parameters hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Write;
use unisender_local::http::body::Form;
use unisender_local::http::memory::Reservation;
use unisender_local::http::wire::HttpRequest;

fuzz_target!(|data: &[u8]| {
    let Some((&choice, bytes)) = data.split_first() else {
        return;
    };
    let content_type = match choice & 3 {
        0 => "application/x-www-form-urlencoded",
        1 => "multipart/form-data; boundary=b",
        2 => "",
        _ => "application/json",
    };
    // The bytes as the body itself, or compressed here so that the decoder meets real streams.
    let (coding, body) = match (choice >> 2) & 7 {
        0 => (None, bytes.to_vec()),
        1 => (Some("gzip"), bytes.to_vec()),
        2 => (Some("bzip2"), bytes.to_vec()),
        3 | 4 => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(bytes).unwrap();
            (Some("gzip"), gz.finish().unwrap())
        }
        _ => {
            let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            bz.write_all(bytes).unwrap();
            (Some("bzip2"), bz.finish().unwrap())
        }
    };
    let mut headers = vec![("Content-Type".to_string(), content_type.to_string())];
    let mut target = "/en/api/getLists?api_key=from-query".to_string();
    match coding {
        Some("gzip") => headers.push(("Content-Encoding".into(), "gzip".into())),
        Some(_) => target.push_str("&request_compression=bzip2"),
        None => {}
    }
    let request = HttpRequest {
        method: "POST".into(),
        target,
        headers,
        body,
        memory: Reservation::default(),
        peer: None,
    };
    let mut memory = Reservation::default();
    let Ok(form) = Form::read(&request, 1 << 20, &mut memory) else {
        return;
    };
    let key = form.plain_value("api_key");
    if let Ok(params) = form.decode(&mut memory) {
        assert_eq!(key.as_deref(), params.value("api_key"), "the key found first");
    }
});
