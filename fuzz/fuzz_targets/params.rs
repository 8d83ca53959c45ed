//! The parameter decoder on any bytes: it answers a tree or an error, never panics, and a value
//! it decodes from a percent-encoding of itself comes back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unisender_local::params::Params;

fuzz_target!(|data: &[u8]| {
    if let Ok(params) = Params::from_urlencoded(data) {
        // Whatever decoded can be read back without panicking.
        for name in ["api_key", "data", "field_names", "fields"] {
            let _ = params.value(name);
            let _ = params.get(name).and_then(|p| p.as_array()).map(|a| a.len());
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let encoded: String = text.bytes().map(|b| format!("%{b:02X}")).collect();
        let params =
            Params::from_urlencoded(format!("v={encoded}").as_bytes()).expect("UTF-8 decodes");
        assert_eq!(params.value("v"), Some(text));
    }
});
