//! The data representations of section 1.5: integers, Variable Byte Integers,
//! UTF-8 strings and binary data, read from a `Bytes` (zero-copy: strings and
//! binary fields share the packet's buffer) and written to a `BytesMut`.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::error::{DecodeError, EncodeError};

/// The largest value a Variable Byte Integer can hold (section 1.5.5).
pub(crate) const MAX_VAR_INT: usize = 268_435_455;

pub(crate) fn read_u8(buf: &mut Bytes, what: &'static str) -> Result<u8, DecodeError> {
    if buf.is_empty() {
        return Err(DecodeError::Truncated(what));
    }
    Ok(buf.get_u8())
}

pub(crate) fn read_u16(buf: &mut Bytes, what: &'static str) -> Result<u16, DecodeError> {
    if buf.len() < 2 {
        return Err(DecodeError::Truncated(what));
    }
    Ok(buf.get_u16())
}

pub(crate) fn read_u32(buf: &mut Bytes, what: &'static str) -> Result<u32, DecodeError> {
    if buf.len() < 4 {
        return Err(DecodeError::Truncated(what));
    }
    Ok(buf.get_u32())
}

/// Parses a Variable Byte Integer at the start of `bytes` without consuming it.
/// `Ok(None)` means the integer continues past the end of `bytes`.
/// Returns the value and the number of bytes it occupies.
pub(crate) fn parse_var_int(bytes: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        if i == 4 {
            return Err(DecodeError::VarIntTooLong);
        }
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            // MQTT-1.5.5-1: the shortest form. A multi-byte encoding whose
            // last byte is zero could have been one byte shorter.
            if i > 0 && byte == 0 {
                return Err(DecodeError::VarIntNotMinimal);
            }
            return Ok(Some((value, i + 1)));
        }
    }
    if bytes.len() >= 4 {
        return Err(DecodeError::VarIntTooLong);
    }
    Ok(None)
}

pub(crate) fn read_var_int(buf: &mut Bytes, what: &'static str) -> Result<u32, DecodeError> {
    match parse_var_int(buf)? {
        Some((value, len)) => {
            buf.advance(len);
            Ok(value)
        }
        None => Err(DecodeError::Truncated(what)),
    }
}

/// Splits `len` bytes off the front of `buf`, sharing its storage.
pub(crate) fn take(buf: &mut Bytes, len: usize, what: &'static str) -> Result<Bytes, DecodeError> {
    if buf.len() < len {
        return Err(DecodeError::Truncated(what));
    }
    Ok(buf.split_to(len))
}

/// Binary Data (section 1.5.6): a two-byte length and that many bytes.
pub(crate) fn read_binary(buf: &mut Bytes, what: &'static str) -> Result<Bytes, DecodeError> {
    let len = read_u16(buf, what)? as usize;
    take(buf, len, what)
}

/// UTF-8 Encoded String (section 1.5.4): well-formed UTF-8 (which excludes the
/// surrogates U+D800..U+DFFF, MQTT-1.5.4-1) and no U+0000 (MQTT-1.5.4-2).
pub(crate) fn read_string(buf: &mut Bytes, what: &'static str) -> Result<ByteString, DecodeError> {
    let raw = read_binary(buf, what)?;
    utf8(raw)
}

/// Validates bytes as an MQTT UTF-8 string, sharing their storage.
pub(crate) fn utf8(raw: Bytes) -> Result<ByteString, DecodeError> {
    if raw.contains(&0) {
        return Err(DecodeError::NullCharacter);
    }
    ByteString::try_from(raw).map_err(|_| DecodeError::InvalidUtf8)
}

/// Number of bytes the Variable Byte Integer encoding of `value` takes.
pub(crate) fn var_int_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

pub(crate) fn write_var_int(buf: &mut BytesMut, value: usize) -> Result<(), EncodeError> {
    if value > MAX_VAR_INT {
        return Err(EncodeError::VarIntOutOfRange(value));
    }
    let mut value = value;
    loop {
        let mut byte = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if value == 0 {
            return Ok(());
        }
    }
}

pub(crate) fn write_binary(
    buf: &mut BytesMut,
    data: &[u8],
    what: &'static str,
) -> Result<(), EncodeError> {
    let len = u16::try_from(data.len()).map_err(|_| EncodeError::FieldTooLong(what))?;
    buf.put_u16(len);
    buf.put_slice(data);
    Ok(())
}

pub(crate) fn write_string(
    buf: &mut BytesMut,
    s: &str,
    what: &'static str,
) -> Result<(), EncodeError> {
    write_binary(buf, s.as_bytes(), what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_int_boundaries_round_trip() {
        for value in [
            0,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            MAX_VAR_INT,
        ] {
            let mut buf = BytesMut::new();
            write_var_int(&mut buf, value).unwrap();
            assert_eq!(buf.len(), var_int_len(value));
            assert_eq!(
                parse_var_int(&buf).unwrap(),
                Some((value as u32, buf.len()))
            );
        }
    }

    #[test]
    fn var_int_rejects_fifth_byte_and_overlong_forms() {
        assert_eq!(
            parse_var_int(&[0xFF, 0xFF, 0xFF, 0xFF, 0x7F]),
            Err(DecodeError::VarIntTooLong)
        );
        assert_eq!(
            parse_var_int(&[0x80, 0x80, 0x80, 0x80]),
            Err(DecodeError::VarIntTooLong)
        );
        // MQTT-1.5.5-1: 0 encoded in two bytes.
        assert_eq!(
            parse_var_int(&[0x80, 0x00]),
            Err(DecodeError::VarIntNotMinimal)
        );
        assert_eq!(parse_var_int(&[0x80, 0x80]), Ok(None));
        assert_eq!(parse_var_int(&[]), Ok(None));
    }

    #[test]
    fn strings_reject_null_and_surrogates() {
        assert_eq!(
            utf8(Bytes::from_static(b"a\0b")),
            Err(DecodeError::NullCharacter)
        );
        // U+D800 encoded as if it were a scalar value (CESU-style).
        assert_eq!(
            utf8(Bytes::from_static(&[0xED, 0xA0, 0x80])),
            Err(DecodeError::InvalidUtf8)
        );
        assert_eq!(utf8(Bytes::from_static("é€😀".as_bytes())).unwrap(), "é€😀");
    }
}
