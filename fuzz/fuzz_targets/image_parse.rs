//! Image references: `ecr_guard::image::parse` never panics, and what it accepts
//! is stable — the normalised name re-parses to the same image, and the host's
//! spelling (case, an explicit `:443`) never changes whether it is ECR.
#![no_main]

use ecr_guard::image::{self, ImageRef};
use libfuzzer_sys::fuzz_target;

fn written(image: &ImageRef) -> String {
    let mut s = image.name.clone();
    if let Some(tag) = &image.tag {
        s.push(':');
        s.push_str(tag);
    }
    if let Some(digest) = &image.digest {
        s.push('@');
        s.push_str(digest);
    }
    s
}

fuzz_target!(|data: &[u8]| {
    let Ok(reference) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = image::parse(reference) else {
        return;
    };
    // The normalised form is a fixed point: the 255-character limit is on the
    // path after the host, so spelling out `docker.io/` changes nothing.
    let again = match image::parse(&written(&parsed)) {
        Ok(again) => again,
        Err(e) => panic!(
            "{reference:?} → {:?} no longer parses: {e}",
            written(&parsed)
        ),
    };
    assert_eq!(again, parsed, "{reference:?}");

    // Upper-casing the host and adding :443 do not change the classification.
    if let Some((host, rest)) = parsed.name.split_once('/')
        && !host.contains(':')
        && host.contains('.')
    {
        let mut respelled = format!("{}:443/{rest}", host.to_ascii_uppercase());
        if let Some(tag) = &parsed.tag {
            respelled.push(':');
            respelled.push_str(tag);
        }
        if let Some(digest) = &parsed.digest {
            respelled.push('@');
            respelled.push_str(digest);
        }
        // The host does not count towards the 255-character limit, so the
        // longer spelling parses as well.
        let other = match image::parse(&respelled) {
            Ok(other) => other,
            Err(e) => panic!("{respelled:?} (from {reference:?}) fails: {e}"),
        };
        assert_eq!(
            other.ecr_repository(),
            parsed.ecr_repository(),
            "{respelled:?}"
        );
        assert_eq!(other.name, parsed.name, "{respelled:?}");
    }
});
