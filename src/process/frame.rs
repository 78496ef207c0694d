//! The wire between a pool and its workers: length-prefixed frames on a
//! Unix socket.
//!
//! A frame is a `u32` little-endian length (of what follows), one tag byte
//! and the body. Nothing else crosses the socket, and nothing of the
//! worker's own output does: its stdout and stderr stay free for the
//! functions it runs.

use std::io::{self, Read, Write};

/// The largest frame either side accepts (1 GiB): a corrupt length must
/// not make the reader allocate without bound.
pub(crate) const MAX_FRAME: usize = 1 << 30;

/// Worker to pool, once: the token it was given and its pid.
pub(crate) const HELLO: u8 = 1;
/// Pool to worker: a call (`u16` name length, name, input).
pub(crate) const CALL: u8 = 2;
/// Worker to pool: the function returned this output.
pub(crate) const OK: u8 = 3;
/// Worker to pool: the function returned an error with this message.
pub(crate) const FAILED: u8 = 4;
/// Worker to pool: the function panicked (the message, empty for none).
pub(crate) const PANICKED: u8 = 5;
/// Worker to pool: no function of that name is registered in the worker.
pub(crate) const UNKNOWN: u8 = 6;

/// Writes one frame made of `parts`, in as few writes as is cheap.
pub(crate) fn write_frame(out: &mut impl Write, tag: u8, parts: &[&[u8]]) -> io::Result<()> {
    let body: usize = parts.iter().map(|p| p.len()).sum();
    if body >= MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a frame of {body} bytes is over the 1 GiB limit"),
        ));
    }
    let len = u32::try_from(body + 1).expect("MAX_FRAME fits in a u32");
    // Small frames go in one write (one syscall); a large body is written
    // in place rather than copied.
    if body <= 64 * 1024 {
        let mut frame = Vec::with_capacity(5 + body);
        frame.extend_from_slice(&len.to_le_bytes());
        frame.push(tag);
        for part in parts {
            frame.extend_from_slice(part);
        }
        out.write_all(&frame)
    } else {
        let mut head = [0u8; 5];
        head[..4].copy_from_slice(&len.to_le_bytes());
        head[4] = tag;
        out.write_all(&head)?;
        for part in parts {
            out.write_all(part)?;
        }
        Ok(())
    }
}

/// Reads one frame: `Ok(None)` at a clean end of stream (between frames).
pub(crate) fn read_frame(input: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match input.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad frame length {len}"),
        ));
    }
    let mut tag = [0u8; 1];
    input.read_exact(&mut tag)?;
    let mut body = vec![0u8; len - 1];
    input.read_exact(&mut body)?;
    Ok(Some((tag[0], body)))
}

/// The body of a [`CALL`] frame: name length, name, input.
pub(crate) fn call_parts<'a>(name: &'a str, len: &'a [u8; 2], input: &'a [u8]) -> [&'a [u8]; 3] {
    [len, name.as_bytes(), input]
}

/// Splits a [`CALL`] body into the function's name and its input.
pub(crate) fn split_call(body: &[u8]) -> Option<(&str, &[u8])> {
    let (len, rest) = body.split_first_chunk::<2>()?;
    let len = u16::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return None;
    }
    let (name, input) = rest.split_at(len);
    Some((std::str::from_utf8(name).ok()?, input))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_small_and_large_and_end_cleanly() {
        let mut wire = Vec::new();
        write_frame(&mut wire, OK, &[b"abc"]).unwrap();
        let big = vec![7u8; 200_000];
        write_frame(&mut wire, FAILED, &[&big[..10], &big[10..]]).unwrap();
        let mut input = &wire[..];
        assert_eq!(read_frame(&mut input).unwrap(), Some((OK, b"abc".to_vec())));
        assert_eq!(read_frame(&mut input).unwrap(), Some((FAILED, big)));
        assert_eq!(read_frame(&mut input).unwrap(), None);
    }

    #[test]
    fn a_torn_or_corrupt_frame_is_an_error_not_an_allocation() {
        let mut wire = Vec::new();
        write_frame(&mut wire, OK, &[b"abcdef"]).unwrap();
        let mut torn = &wire[..7];
        assert!(read_frame(&mut torn).is_err());
        let mut corrupt = &[0xff, 0xff, 0xff, 0xff, 1][..];
        assert!(read_frame(&mut corrupt).is_err());
    }

    #[test]
    fn a_call_body_splits_into_name_and_input() {
        let len = 5u16.to_le_bytes();
        let parts = call_parts("parse", &len, b"xyz");
        let body: Vec<u8> = parts.concat();
        assert_eq!(split_call(&body), Some(("parse", &b"xyz"[..])));
        assert_eq!(split_call(&body[..4]), None);
    }
}
