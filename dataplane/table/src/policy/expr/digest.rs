//! The digests of the `hash.*` macros, as the docs compute them: CRC-32 (IEEE),
//! CRC-64 (ISO, as Go's `crc64.ISO`), MD5, SHA-1, SHA-256, SHA-512 and XXH64 (seed
//! 0); a checksum is taken as its big-endian bytes.

use super::Digest;

/// The digest of `data`, as bytes.
pub(crate) fn digest(kind: Digest, data: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    match kind {
        Digest::Crc32 => crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC)
            .checksum(data)
            .to_be_bytes()
            .to_vec(),
        Digest::Crc64 => crc::Crc::<u64>::new(&crc::CRC_64_GO_ISO)
            .checksum(data)
            .to_be_bytes()
            .to_vec(),
        Digest::Md5 => md5::Md5::digest(data).to_vec(),
        Digest::Sha1 => sha1::Sha1::digest(data).to_vec(),
        Digest::Sha256 => sha2::Sha256::digest(data).to_vec(),
        Digest::Sha512 => sha2::Sha512::digest(data).to_vec(),
        Digest::XxHash64 => xxhash_rust::xxh64::xxh64(data, 0).to_be_bytes().to_vec(),
    }
}
