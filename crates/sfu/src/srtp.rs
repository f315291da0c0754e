//! Direct SRTP for audio: sealing what we forward, opening what publishers send, and sealing the
//! receiver reports we write for the audio we open.
//!
//! str0m drives every outgoing packet through its send queue and poll loop, which costs far more than
//! the encryption itself when one packet fans out to many subscribers; and it runs a full timeout
//! pass for every packet it receives. For audio (never retransmitted, so str0m's buffers add nothing)
//! we seal and open with our own SRTP contexts and hand datagrams straight to the shell. Hand-written
//! on str0m's crypto provider primitives for speed (no per-packet allocation, no poll); checked against
//! the RFC 3711 and RFC 7714 vectors below.
//!
//! The keys come from the DTLS handshake that str0m runs: a thin wrapper around the crypto provider's
//! DTLS instance copies the exported keying material (RFC 5764) into a [`KeySlot`] the peer owns.
//! Session keys are derived as RFC 3711 §4.3 says, with the provider's AES primitives.

use std::cell::RefCell;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
    SrtpProfile,
};
use str0m::crypto::{
    AeadAes128Gcm, AeadAes128GcmCipher, AeadAes256Gcm, AeadAes256GcmCipher, Aes128CmSha1_80,
    Aes128CmSha1_80Cipher, CryptoError, CryptoProvider, Sha1HmacProvider, SrtpProvider,
};

/// The SRTP master keys of one connection, as the DTLS handshake exported them.
pub struct SrtpKeys {
    profile: SrtpProfile,
    /// `client key | server key | client salt | server salt`.
    material: Vec<u8>,
    /// We were the DTLS client: our sending keys are the client's.
    active: bool,
}

impl fmt::Debug for SrtpKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("SrtpKeys")
            .field("profile", &self.profile)
            .field("active", &self.active)
            .finish()
    }
}

/// Where a connection's DTLS instance leaves its keys once the handshake is done.
#[derive(Debug, Default)]
pub struct KeySlot(OnceLock<SrtpKeys>);

impl KeySlot {
    pub fn get(&self) -> Option<&SrtpKeys> {
        self.0.get()
    }
}

thread_local! {
    /// The slot for the next DTLS instance built on this thread (see [`build_with_key_slot`]).
    static NEXT_SLOT: RefCell<Option<Arc<KeySlot>>> = const { RefCell::new(None) };
}

/// Runs `build` (which must construct exactly one `Rtc` with [`crypto_provider`]) so that the DTLS
/// instance it creates reports its keys to the returned slot. str0m creates the instance inside
/// `RtcConfig::build`, on the calling thread.
pub fn build_with_key_slot<T>(build: impl FnOnce() -> T) -> (T, Arc<KeySlot>) {
    let slot = Arc::new(KeySlot::default());
    NEXT_SLOT.with(|s| *s.borrow_mut() = Some(slot.clone()));
    let built = build();
    NEXT_SLOT.with(|s| s.borrow_mut().take());
    (built, slot)
}

/// The process's crypto provider: str0m's default, with key capture around DTLS.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let mut provider = str0m::crypto::from_feature_flags();
            let capturing: &'static CapturingDtls = Box::leak(Box::new(CapturingDtls {
                inner: provider.dtls_provider,
            }));
            provider.dtls_provider = capturing;
            Arc::new(provider)
        })
        .clone()
}

/// One DTLS certificate for the whole process: browsers check its fingerprint from the SDP, not
/// its identity, and making one per connection costs a key generation per join.
pub fn shared_certificate() -> Option<DtlsCert> {
    static CERT: OnceLock<Option<DtlsCert>> = OnceLock::new();
    CERT.get_or_init(|| crypto_provider().dtls_provider.generate_certificate())
        .clone()
}

#[derive(Debug)]
struct CapturingDtls {
    inner: &'static dyn DtlsProvider,
}

impl DtlsProvider for CapturingDtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        self.inner.generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let inner = self.inner.new_dtls(cert, now, dtls_version, mtu)?;
        Ok(match NEXT_SLOT.with(|s| s.borrow_mut().take()) {
            Some(slot) => Box::new(CapturingInstance {
                inner,
                slot,
                active: false,
            }),
            None => inner,
        })
    }

    fn is_test(&self) -> bool {
        self.inner.is_test()
    }
}

#[derive(Debug)]
struct CapturingInstance {
    inner: Box<dyn DtlsInstance>,
    slot: Arc<KeySlot>,
    active: bool,
}

impl DtlsInstance for CapturingInstance {
    fn set_active(&mut self, active: bool) {
        self.active = active;
        self.inner.set_active(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.inner.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        let output = self.inner.poll_output(buf);
        if let DtlsOutput::KeyingMaterial(material, profile) = &output {
            let _ = self.slot.0.set(SrtpKeys {
                profile: *profile,
                material: material.as_ref().to_vec(),
                active: self.active,
            });
        }
        output
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.inner.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.inner.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.inner.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.inner.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.inner.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.inner.close()
    }
}

// RFC 3711 §4.3.1 key derivation labels.
const LABEL_RTP_ENCRYPTION: u8 = 0;
const LABEL_RTP_AUTH: u8 = 1;
const LABEL_RTP_SALT: u8 = 2;
const LABEL_RTCP_ENCRYPTION: u8 = 3;
const LABEL_RTCP_AUTH: u8 = 4;
const LABEL_RTCP_SALT: u8 = 5;

/// Which keys of a connection a context uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    /// Our sending half, for RTP.
    SendRtp,
    /// Our sending half, for RTCP.
    SendRtcp,
    /// The remote's sending half, for RTP.
    ReceiveRtp,
}

impl Use {
    fn ours(self) -> bool {
        self != Use::ReceiveRtp
    }

    /// Encryption, authentication and salt labels.
    fn labels(self) -> (u8, u8, u8) {
        match self {
            Use::SendRtp | Use::ReceiveRtp => {
                (LABEL_RTP_ENCRYPTION, LABEL_RTP_AUTH, LABEL_RTP_SALT)
            }
            Use::SendRtcp => (LABEL_RTCP_ENCRYPTION, LABEL_RTCP_AUTH, LABEL_RTCP_SALT),
        }
    }
}

/// Room a sealed packet needs beyond header and payload: the longest tag plus the counter-mode
/// scratch some AES backends write past the end.
pub const SRTP_OVERHEAD: usize = 16 + 15;

enum Cipher {
    CmSha1 {
        enc: Box<dyn Aes128CmSha1_80Cipher>,
        auth_key: [u8; Aes128CmSha1_80::HMAC_KEY_LEN],
        salt: [u8; Aes128CmSha1_80::SALT_LEN],
        hmac: &'static dyn Sha1HmacProvider,
    },
    Gcm128 {
        enc: Box<dyn AeadAes128GcmCipher>,
        salt: [u8; AeadAes128Gcm::SALT_LEN],
    },
    Gcm256 {
        enc: Box<dyn AeadAes256GcmCipher>,
        salt: [u8; AeadAes256Gcm::SALT_LEN],
    },
}

/// Encrypts the RTP packets one connection sends.
pub struct SrtpSender {
    cipher: Cipher,
}

impl fmt::Debug for SrtpSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SrtpSender")
    }
}

impl Cipher {
    /// The session cipher for `keys` used as `usage`, or `None` for a profile we do not implement.
    fn new(provider: &CryptoProvider, keys: &SrtpKeys, usage: Use) -> Option<Cipher> {
        let srtp = provider.srtp_provider;
        let (enc_label, auth_label, salt_label) = usage.labels();
        let encrypt = usage.ours();
        Some(match keys.profile {
            SrtpProfile::AES128_CM_SHA1_80 => {
                let master = Master::<16, 14>::of(keys, usage.ours())?;
                let mut key = [0; 16];
                let mut auth_key = [0; Aes128CmSha1_80::HMAC_KEY_LEN];
                let mut salt = [0; Aes128CmSha1_80::SALT_LEN];
                master.derive(srtp, enc_label, &mut key);
                master.derive(srtp, auth_label, &mut auth_key);
                master.derive(srtp, salt_label, &mut salt);
                Cipher::CmSha1 {
                    enc: srtp.aes_128_cm_sha1_80().create_cipher(key, encrypt),
                    auth_key,
                    salt,
                    hmac: provider.sha1_hmac_provider,
                }
            }
            SrtpProfile::AEAD_AES_128_GCM => {
                let master = Master::<16, 12>::of(keys, usage.ours())?;
                let mut key = [0; 16];
                let mut salt = [0; AeadAes128Gcm::SALT_LEN];
                master.derive(srtp, enc_label, &mut key);
                master.derive(srtp, salt_label, &mut salt);
                Cipher::Gcm128 {
                    enc: srtp.aead_aes_128_gcm().create_cipher(key, encrypt),
                    salt,
                }
            }
            SrtpProfile::AEAD_AES_256_GCM => {
                let master = Master::<32, 12>::of(keys, usage.ours())?;
                let mut key = [0; 32];
                let mut salt = [0; AeadAes256Gcm::SALT_LEN];
                master.derive(srtp, enc_label, &mut key);
                master.derive(srtp, salt_label, &mut salt);
                Cipher::Gcm256 {
                    enc: srtp.aead_aes_256_gcm().create_cipher(key, encrypt),
                    salt,
                }
            }
            _ => return None,
        })
    }
}

impl SrtpSender {
    /// The sending context for `keys`, or `None` for a profile we do not implement.
    pub fn new(provider: &CryptoProvider, keys: &SrtpKeys) -> Option<SrtpSender> {
        Some(SrtpSender {
            cipher: Cipher::new(provider, keys, Use::SendRtp)?,
        })
    }

    /// Seals an RTP packet: `out` holds the plain header (`out.len()` bytes, SSRC and sequence
    /// number written), `payload` is appended encrypted, then the tag. `index` is the packet's
    /// SRTP index (rollover count << 16 | sequence number).
    pub fn seal(&mut self, out: &mut Vec<u8>, payload: &[u8], index: u64) -> bool {
        let header_len = out.len();
        if header_len < 12 {
            return false;
        }
        let ssrc = u32::from_be_bytes([out[8], out[9], out[10], out[11]]);
        let body_end = header_len + payload.len();
        out.resize(body_end + SRTP_OVERHEAD, 0);
        let ok = match &mut self.cipher {
            Cipher::CmSha1 {
                enc,
                auth_key,
                salt,
                hmac,
            } => {
                let iv = Aes128CmSha1_80::rtp_iv(*salt, ssrc, index);
                if enc.encrypt(&iv, payload, &mut out[header_len..]).is_err() {
                    false
                } else {
                    let sha1_hmac = |k: &[u8], p: &[&[u8]]| hmac.sha1_hmac(k, p);
                    Aes128CmSha1_80::rtp_hmac(sha1_hmac, auth_key, out, index, body_end);
                    out.truncate(body_end + Aes128CmSha1_80::HMAC_TAG_LEN);
                    true
                }
            }
            Cipher::Gcm128 { enc, salt } => {
                let iv = AeadAes128Gcm::rtp_iv(*salt, ssrc, (index >> 16) as u32, index as u16);
                let (aad, body) = out.split_at_mut(header_len);
                let sealed = enc.encrypt(&iv, aad, payload, &mut body[..payload.len() + 16]);
                out.truncate(body_end + AeadAes128Gcm::TAG_LEN);
                sealed.is_ok()
            }
            Cipher::Gcm256 { enc, salt } => {
                let iv = AeadAes256Gcm::rtp_iv(*salt, ssrc, (index >> 16) as u32, index as u16);
                let (aad, body) = out.split_at_mut(header_len);
                let sealed = enc.encrypt(&iv, aad, payload, &mut body[..payload.len() + 16]);
                out.truncate(body_end + AeadAes256Gcm::TAG_LEN);
                sealed.is_ok()
            }
        };
        if !ok {
            out.clear();
        }
        ok
    }
}

/// Opens the SRTP packets one connection's remote sends.
pub struct SrtpReceiver {
    cipher: Cipher,
}

impl fmt::Debug for SrtpReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SrtpReceiver")
    }
}

/// Spare room the AES counter mode of some backends writes past the end of its output.
const CTR_SLACK: usize = 15;

impl SrtpReceiver {
    /// The receiving context for `keys`, or `None` for a profile we do not implement.
    pub fn new(provider: &CryptoProvider, keys: &SrtpKeys) -> Option<SrtpReceiver> {
        Some(SrtpReceiver {
            cipher: Cipher::new(provider, keys, Use::ReceiveRtp)?,
        })
    }

    /// Checks and decrypts `packet` (an SRTP packet whose plain header is `header_len` bytes) with
    /// SRTP index `index` (rollover count << 16 | sequence number). The payload goes to `out`.
    /// False when it does not authenticate.
    pub fn open(
        &mut self,
        packet: &[u8],
        header_len: usize,
        index: u64,
        out: &mut Vec<u8>,
    ) -> bool {
        out.clear();
        if packet.len() < 12 || header_len < 12 || header_len > packet.len() {
            return false;
        }
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        match &mut self.cipher {
            Cipher::CmSha1 {
                enc,
                auth_key,
                salt,
                hmac,
            } => {
                let Some(tag_start) = packet.len().checked_sub(Aes128CmSha1_80::HMAC_TAG_LEN)
                else {
                    return false;
                };
                if tag_start < header_len {
                    return false;
                }
                let sha1_hmac = |k: &[u8], p: &[&[u8]]| hmac.sha1_hmac(k, p);
                let (signed, tag) = packet.split_at(tag_start);
                if !Aes128CmSha1_80::rtp_verify(sha1_hmac, auth_key, signed, index, tag) {
                    return false;
                }
                let input = &packet[header_len..tag_start];
                out.resize(input.len() + CTR_SLACK, 0);
                let iv = Aes128CmSha1_80::rtp_iv(*salt, ssrc, index);
                if enc.decrypt(&iv, input, out).is_err() {
                    out.clear();
                    return false;
                }
                out.truncate(input.len());
                true
            }
            Cipher::Gcm128 { enc, salt } => {
                let iv = AeadAes128Gcm::rtp_iv(*salt, ssrc, (index >> 16) as u32, index as u16);
                gcm_open(
                    packet,
                    header_len,
                    out,
                    AeadAes128Gcm::TAG_LEN,
                    |aad, input, out| enc.decrypt(&iv, &[aad], input, out),
                )
            }
            Cipher::Gcm256 { enc, salt } => {
                let iv = AeadAes256Gcm::rtp_iv(*salt, ssrc, (index >> 16) as u32, index as u16);
                gcm_open(
                    packet,
                    header_len,
                    out,
                    AeadAes256Gcm::TAG_LEN,
                    |aad, input, out| enc.decrypt(&iv, &[aad], input, out),
                )
            }
        }
    }
}

/// AES-GCM opening of an SRTP packet (RFC 7714 §5.2.2): the header is the associated data.
fn gcm_open(
    packet: &[u8],
    header_len: usize,
    out: &mut Vec<u8>,
    tag_len: usize,
    decrypt: impl FnOnce(&[u8], &[u8], &mut [u8]) -> Result<usize, CryptoError>,
) -> bool {
    let (aad, input) = packet.split_at(header_len);
    let Some(plain_len) = input.len().checked_sub(tag_len) else {
        return false;
    };
    out.resize(plain_len, 0);
    match decrypt(aad, input, out) {
        Ok(n) => {
            out.truncate(n);
            true
        }
        Err(_) => {
            out.clear();
            false
        }
    }
}

/// Seals the RTCP packets we write ourselves (receiver reports for the audio we open): RFC 3711
/// §3.4 and RFC 7714 §9. Our reports carry an SSRC of their own, so their SRTCP index (and the
/// GCM nonce made from SSRC and index) never meets one str0m uses.
pub struct SrtcpSender {
    cipher: Cipher,
    index: u32,
}

impl fmt::Debug for SrtcpSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SrtcpSender")
    }
}

/// Bytes SRTCP adds to a compound packet at most (tag and E flag with index).
pub const SRTCP_OVERHEAD: usize = 16 + 4;

impl SrtcpSender {
    pub fn new(provider: &CryptoProvider, keys: &SrtpKeys) -> Option<SrtcpSender> {
        Some(SrtcpSender {
            cipher: Cipher::new(provider, keys, Use::SendRtcp)?,
            index: 0,
        })
    }

    /// Seals the plain compound RTCP packet in `out` (at least the 8-byte header with the sender
    /// SSRC), always encrypted. False (and `out` emptied) on a crypto failure.
    pub fn seal(&mut self, out: &mut Vec<u8>) -> bool {
        if out.len() < 8 {
            out.clear();
            return false;
        }
        let index = self.index;
        self.index = (index + 1) & 0x7fff_ffff;
        let e_and_index = (0x8000_0000 | index).to_be_bytes();
        let ssrc = u32::from_be_bytes([out[4], out[5], out[6], out[7]]);
        let body = out.split_off(8);
        let ok = match &mut self.cipher {
            Cipher::CmSha1 {
                enc,
                auth_key,
                salt,
                hmac,
            } => {
                let iv = Aes128CmSha1_80::rtp_iv(*salt, ssrc, u64::from(index));
                out.resize(8 + body.len() + CTR_SLACK, 0);
                let ok = enc.encrypt(&iv, &body, &mut out[8..]).is_ok();
                out.truncate(8 + body.len());
                out.extend_from_slice(&e_and_index);
                let signed = out.len();
                out.resize(signed + Aes128CmSha1_80::HMAC_TAG_LEN, 0);
                let sha1_hmac = |k: &[u8], p: &[&[u8]]| hmac.sha1_hmac(k, p);
                Aes128CmSha1_80::rtcp_hmac(sha1_hmac, auth_key, out, signed);
                ok
            }
            Cipher::Gcm128 { enc, salt } => {
                let iv = AeadAes128Gcm::rtcp_iv(*salt, ssrc, index);
                gcm_seal_rtcp(
                    out,
                    &body,
                    e_and_index,
                    AeadAes128Gcm::TAG_LEN,
                    |aad, i, o| enc.encrypt(&iv, aad, i, o),
                )
            }
            Cipher::Gcm256 { enc, salt } => {
                let iv = AeadAes256Gcm::rtcp_iv(*salt, ssrc, index);
                gcm_seal_rtcp(
                    out,
                    &body,
                    e_and_index,
                    AeadAes256Gcm::TAG_LEN,
                    |aad, i, o| enc.encrypt(&iv, aad, i, o),
                )
            }
        };
        if !ok {
            out.clear();
        }
        ok
    }
}

/// AES-GCM sealing of SRTCP (RFC 7714 §9.1): header, ciphertext, tag, then E flag and index; the
/// associated data is the 8-byte header and the E flag with index.
fn gcm_seal_rtcp(
    out: &mut Vec<u8>,
    body: &[u8],
    e_and_index: [u8; 4],
    tag_len: usize,
    encrypt: impl FnOnce(&[u8], &[u8], &mut [u8]) -> Result<(), CryptoError>,
) -> bool {
    let mut aad = [0u8; 12];
    aad[..8].copy_from_slice(&out[..8]);
    aad[8..].copy_from_slice(&e_and_index);
    out.resize(8 + body.len() + tag_len, 0);
    let ok = encrypt(&aad, body, &mut out[8..]).is_ok();
    out.extend_from_slice(&e_and_index);
    ok
}

/// Our sending half of the master key and salt.
struct Master<const KEY: usize, const SALT: usize> {
    key: [u8; KEY],
    salt: [u8; SALT],
}

impl<const KEY: usize, const SALT: usize> Master<KEY, SALT> {
    /// Our sending half (`ours`) or the remote's.
    fn of(keys: &SrtpKeys, ours: bool) -> Option<Self> {
        let m = &keys.material;
        if m.len() != 2 * KEY + 2 * SALT {
            return None;
        }
        // The DTLS client writes with the client key; the server with the server key.
        let (k, s) = if keys.active == ours {
            (0, 2 * KEY)
        } else {
            (KEY, 2 * KEY + SALT)
        };
        let mut key = [0; KEY];
        let mut salt = [0; SALT];
        key.copy_from_slice(&m[k..k + KEY]);
        salt.copy_from_slice(&m[s..s + SALT]);
        Some(Master { key, salt })
    }

    /// AES-CM PRF: AES_k((salt ^ label << 48) << 16 + counter), key derivation rate 0.
    fn derive(&self, srtp: &dyn SrtpProvider, label: u8, out: &mut [u8]) {
        let mut input = [0u8; 16];
        input[..SALT].copy_from_slice(&self.salt);
        input[7] ^= label;
        let mut block = [0u8; 32];
        for (counter, chunk) in out.chunks_mut(16).enumerate() {
            input[14..].copy_from_slice(&(counter as u16).to_be_bytes());
            match KEY {
                16 => srtp.srtp_aes_128_ecb_round(&self.key, &input, &mut block),
                _ => srtp.srtp_aes_256_ecb_round(&self.key, &input, &mut block),
            }
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 3711 appendix B.3: the AES-CM key derivation test vectors.
    #[test]
    fn key_derivation_matches_rfc_3711() {
        let master = Master::<16, 14> {
            key: hex("E1F97A0D3E018BE0D64FA32C06DE4139").try_into().unwrap(),
            salt: hex("0EC675AD498AFEEBB6960B3AABE6").try_into().unwrap(),
        };
        let srtp = crypto_provider().srtp_provider;
        let mut key = [0u8; 16];
        master.derive(srtp, LABEL_RTP_ENCRYPTION, &mut key);
        assert_eq!(key.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut salt = [0u8; 14];
        master.derive(srtp, LABEL_RTP_SALT, &mut salt);
        assert_eq!(salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        let mut auth = [0u8; 20];
        master.derive(srtp, LABEL_RTP_AUTH, &mut auth);
        assert_eq!(
            auth.to_vec(),
            hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
        );
    }

    /// Our half of the exported material depends on the DTLS role.
    #[test]
    fn the_dtls_role_picks_the_sending_keys() {
        let material: Vec<u8> = (0..56).collect(); // 16 + 16 + 12 + 12
        let keys = |active| SrtpKeys {
            profile: SrtpProfile::AEAD_AES_128_GCM,
            material: material.clone(),
            active,
        };
        let client = Master::<16, 12>::of(&keys(true), true).unwrap();
        assert_eq!(client.key[0], 0);
        assert_eq!(client.salt[0], 32);
        let server = Master::<16, 12>::of(&keys(false), true).unwrap();
        assert_eq!(server.key[0], 16);
        assert_eq!(server.salt[0], 44);
        // Material of the wrong length for the profile is refused, not sliced.
        assert!(Master::<32, 12>::of(&keys(false), true).is_none());
    }

    /// The AEAD_AES_128_GCM session key and salt of RFC 7714's test vectors (RTP and RTCP alike).
    fn rfc_7714_cipher(encrypt: bool) -> Cipher {
        let key: [u8; 16] = hex("000102030405060708090a0b0c0d0e0f").try_into().unwrap();
        let salt: [u8; 12] = hex("517569642070726f2071756f").try_into().unwrap();
        Cipher::Gcm128 {
            enc: crypto_provider()
                .srtp_provider
                .aead_aes_128_gcm()
                .create_cipher(key, encrypt),
            salt,
        }
    }

    /// RFC 7714 section 16.1: AEAD_AES_128_GCM protection of a known packet, checked through
    /// `seal` with the session key and salt the RFC gives.
    #[test]
    fn aes_128_gcm_seal_matches_rfc_7714() {
        let mut sender = SrtpSender {
            cipher: rfc_7714_cipher(true),
        };
        let plain = hex(
            "8040f17b8041f8d35501a0b247616c6c696120657374206f6d6e69732064697669736120696e207061727465732074726573",
        );
        let mut out = plain[..12].to_vec();
        assert!(sender.seal(&mut out, &plain[12..], 0xf17b));
        let expected = hex(
            "8040f17b8041f8d35501a0b2f24de3a3fb34de6cacba861c9d7e4bcabe633bd50d294e6f42a5f47a51c7d19b36de3adf8833899d7f27beb16a9152cf765ee4390cce",
        );
        assert_eq!(out, expected);
    }

    /// RFC 7714 section 16.1 the other way: the protected packet opens to the RFC's plaintext.
    #[test]
    fn aes_128_gcm_open_matches_rfc_7714() {
        let mut receiver = SrtpReceiver {
            cipher: rfc_7714_cipher(false),
        };
        let protected = hex(
            "8040f17b8041f8d35501a0b2f24de3a3fb34de6cacba861c9d7e4bcabe633bd50d294e6f42a5f47a51c7d19b36de3adf8833899d7f27beb16a9152cf765ee4390cce",
        );
        let mut out = Vec::new();
        assert!(receiver.open(&protected, 12, 0xf17b, &mut out));
        assert_eq!(
            out,
            hex("47616c6c696120657374206f6d6e69732064697669736120696e207061727465732074726573")
        );
        // One flipped bit anywhere, or the wrong index, and it does not open.
        for at in [0, 5, 12, 30, protected.len() - 1] {
            let mut bad = protected.clone();
            bad[at] ^= 1;
            assert!(!receiver.open(&bad, 12, 0xf17b, &mut out), "flip at {at}");
        }
        assert!(!receiver.open(&protected, 12, 0x1_f17b, &mut out));
        assert!(!receiver.open(&protected[..20], 12, 0xf17b, &mut out));
    }

    /// RFC 7714 section 17.1: AEAD_AES_128_GCM protection of a known RTCP packet (SRTCP index
    /// 0x5d4), checked through `SrtcpSender::seal`.
    #[test]
    fn aes_128_gcm_srtcp_seal_matches_rfc_7714() {
        let mut sender = SrtcpSender {
            cipher: rfc_7714_cipher(true),
            index: 0x5d4,
        };
        let mut out = hex(
            "81c8000d4d6172734e5450314e545032525450200000042a0000e9304c756e61deadbeefdeadbeefdeadbeefdeadbeefdeadbeef",
        );
        assert!(sender.seal(&mut out));
        let expected = hex(
            "81c8000d4d61727363e94885dcdab67ca727d7662f6b7e997ff5c0f76c06f32dc676a5f1730d6fda4ce09b4686303ded0bb9275bc84aa45896cf4d2fc5abf87245d9eade800005d4",
        );
        assert_eq!(out, expected);
        assert_eq!(sender.index, 0x5d5, "the index moves on");
    }

    fn keys(profile: SrtpProfile, active: bool) -> SrtpKeys {
        let len = match profile {
            SrtpProfile::AES128_CM_SHA1_80 => 2 * (16 + 14),
            SrtpProfile::AEAD_AES_128_GCM => 2 * (16 + 12),
            _ => 2 * (32 + 12),
        };
        SrtpKeys {
            profile,
            material: (0..len).map(|i| (i * 7 + 3) as u8).collect(),
            active,
        }
    }

    /// What one side seals with its sending keys, the other opens with its receiving keys, for
    /// every profile; tampering is caught.
    #[test]
    fn every_profile_opens_what_the_other_side_sealed() {
        let provider = crypto_provider();
        for profile in [
            SrtpProfile::AES128_CM_SHA1_80,
            SrtpProfile::AEAD_AES_128_GCM,
            SrtpProfile::AEAD_AES_256_GCM,
        ] {
            let mut client = SrtpSender::new(&provider, &keys(profile, true)).unwrap();
            let mut server = SrtpReceiver::new(&provider, &keys(profile, false)).unwrap();
            let mut wrong_side = SrtpReceiver::new(&provider, &keys(profile, true)).unwrap();
            let payload: Vec<u8> = (0..160).map(|i| i as u8).collect();
            for index in [1u64, 65_535, 65_536 + 4, 3 << 16] {
                let mut packet = vec![0x80, 111];
                packet.extend_from_slice(&(index as u16).to_be_bytes());
                packet.extend_from_slice(&[0, 0, 3, 192, 0xde, 0xad, 0xbe, 0xef]);
                assert!(client.seal(&mut packet, &payload, index));
                let mut out = Vec::new();
                assert!(
                    server.open(&packet, 12, index, &mut out),
                    "{profile:?} {index}"
                );
                assert_eq!(out, payload, "{profile:?}");
                assert!(
                    !wrong_side.open(&packet, 12, index, &mut out),
                    "{profile:?}: keys are per direction"
                );
                let mut tampered = packet.clone();
                tampered[20] ^= 0x40;
                assert!(!server.open(&tampered, 12, index, &mut out), "{profile:?}");
            }
            let mut rtcp = SrtcpSender::new(&provider, &keys(profile, false)).unwrap();
            let plain = vec![0x80, 201, 0, 1, 1, 2, 3, 4];
            let mut first = plain.clone();
            assert!(rtcp.seal(&mut first));
            let mut second = plain.clone();
            assert!(rtcp.seal(&mut second));
            assert_eq!(
                &first[first.len() - 4..],
                match profile {
                    SrtpProfile::AES128_CM_SHA1_80 => &first[first.len() - 4..],
                    _ => &[0x80, 0, 0, 0][..],
                }
            );
            assert_ne!(first, second, "{profile:?}: each report gets its own index");
            assert_eq!(&first[..8], &plain[..], "the header stays in the clear");
        }
    }
}
