"""SGP.22 BSP (BPP protection, "SCP03t" in v2.x): session keys and segment protection, both directions.

API (stable; the virtual eUICC and the SM-DP+ simulator both use it):

    ecka_shared_secret(private_key, peer_public) -> bytes      # ECDH, x coordinate (32 bytes, P-256)
    derive_session_keys(shared_secret, host_id, eid, key_type=0x88, key_len=16)
        -> (mac_chain, s_enc, s_mac)                           # SGP.22 2.6.4.2 / Annex G
    BspSender(s_enc, s_mac, mac_chain)
        .wrap(tag, plaintext, encrypt=True) -> tlv_bytes       # one segment: '87'/'86' encrypt, '88' MAC only
        .wrap_all(tag, data, encrypt=True) -> [tlv_bytes, ...]  # split into segments of <= 1020 bytes
    BspReceiver(s_enc, s_mac, mac_chain)
        .unwrap(tlv_bytes, decrypt=True) -> plaintext          # BspError on bad MAC / padding / structure
        .unwrap_all([tlv_bytes, ...], decrypt=True) -> bytes
    .counter, .mac_chain                                        # state, for tests and diagnostics
    BspError(ValueError)                                        # .reason: "mac", "padding", "structure"

    replace_session_keys_request(ppk_enc, ppk_mac, initial_mcv) -> BF26 bytes   # SGP.22 5.5.4
    parse_replace_session_keys(bf26_bytes) -> (mac_chain, ppk_enc, ppk_mac)
    crt_bytes(host_id, key_type=0x88, key_len=16) -> A6 bytes   # controlRefTemplate
    isc_signed_bytes(bf23_bytes, euicc_otpk) -> bytes           # what smdpSign covers
    build_initialise_secure_channel(transaction_id, host_id, smdp_otpk, euicc_otpk, sign) -> BF23 bytes
    parse_initialise_secure_channel(bf23_bytes) -> dict

Facts used (SGP.22 v2.5 2.6.4 and 5.5, as also read by public implementations):

- Shared secret ShS: ECKA-DH (BSI TR-03111) of otSK.DP.ECKA with otPK.EUICC.ECKA,
  i.e. the x coordinate of the product point.
- KDF: ANSI X9.63 with SHA-256 over ShS, SharedInfo = keyType (1 byte) ||
  keyLength (1 byte) || len(hostId) || hostId || len(EID) || EID (EID as its
  16 bytes). The 48 output bytes are, in this order: initial MAC chaining
  value, S-ENC, S-MAC (16 bytes each for AES-128).
- Encryption: AES-128-CBC; the ICV is AES-ECB(S-ENC, counter as a 16-byte big
  endian block). The counter starts at 1 and grows by one for EVERY segment,
  also for the MAC-only '88' segments. Padding: '80' then 0..15 '00' bytes to a
  multiple of 16 (always at least the '80').
- MAC: AES-CMAC(S-MAC, MAC chain || tag || final length || data), where final
  length counts data plus the 8 MAC bytes. The TLV carries the first 8 bytes;
  the full 16 bytes become the next MAC chaining value.
- A segment (tag, length, data and MAC) is at most 1020 bytes.
- ReplaceSessionKeys (PPK): the '86' segments after a secondSequenceOf87 use
  PPK-ENC / PPK-MAC and its initial MAC chaining value, counter back at 1.
- smdpSign in InitialiseSecureChannelRequest covers remoteOpId, transactionId,
  controlRefTemplate and smdpOtpk as encoded in BF23 (without the BF23 header
  and without smdpSign), followed by '5F49' || len || otPK.EUICC.ECKA.
"""

import binascii

from cryptography.hazmat.primitives import cmac, hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF

from ipa_core import tlv
from ipa_core.errors import TlvError

MAX_SEGMENT = 1020          # SGP.22 2.5.3: tag, length, data and MAC together
MAC_LEN = 8
BLOCK = 16
# '86'/'87' plaintext per segment: 4 header bytes (tag, 82 xx xx) + MAC leave
# 1008 bytes of ciphertext = 63 blocks, and padding always takes >= 1 byte.
MAX_ENC_PLAIN = (MAX_SEGMENT - 4 - MAC_LEN) // BLOCK * BLOCK - 1   # 1007
MAX_MAC_PLAIN = MAX_SEGMENT - 4 - MAC_LEN                          # 1008

KEY_TYPE_AES = 0x88
REMOTE_OP_INSTALL_BPP = 1   # RemoteOpId installBoundProfilePackage


class BspError(ValueError):
    """A protected segment that does not verify or does not decode.

    reason: "mac" (MAC mismatch), "padding" (bad '80 00..' padding),
    "structure" (not one TLV, wrong tag, wrong length).
    """

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


# ---- key agreement and derivation ------------------------------------------


def ecka_shared_secret(private_key, peer_public):
    """ECKA-DH: the shared secret (x coordinate) of our private key and the peer's public key.

    peer_public: a cryptography EC public key or an uncompressed point (04 X Y).
    """
    if isinstance(peer_public, (bytes, bytearray, memoryview)):
        data = bytes(peer_public)
        if not data or data[0] != 4:
            raise BspError("structure", "expected an uncompressed EC point (04 X Y), found %d bytes starting %s"
                           % (len(data), tlv.hexs(data[:4])))
        try:
            peer_public = ec.EllipticCurvePublicKey.from_encoded_point(private_key.curve, data)
        except ValueError as e:
            raise BspError("structure", "not a point on %s: %s" % (private_key.curve.name, e)) from None
    return private_key.exchange(ec.ECDH(), peer_public)


def _eid_bytes(eid):
    if isinstance(eid, str):
        if len(eid) != 32:
            raise ValueError("EID must be 32 digits, found %r" % (eid,))
        return binascii.unhexlify(eid)
    eid = bytes(eid)
    if len(eid) != 16:
        raise ValueError("EID must be 16 bytes, found %d" % len(eid))
    return eid


def derive_session_keys(shared_secret, host_id, eid, key_type=KEY_TYPE_AES, key_len=16):
    """SGP.22 2.6.4.2 (Annex G): X9.63 KDF (SHA-256) -> (initial MAC chain, S-ENC, S-MAC).

    host_id: bytes (the CRT's '84' value); eid: 16 bytes or 32 hex digits.
    """
    host_id = bytes(host_id)
    eid = _eid_bytes(eid)
    if not 1 <= len(host_id) <= 16:
        raise ValueError("hostId must be 1..16 bytes, found %d" % len(host_id))
    if key_type != KEY_TYPE_AES or key_len != 16:
        raise ValueError("only AES-128 (key type 88, length 16) is supported, found %02X/%d" % (key_type, key_len))
    shared_info = bytes((key_type, key_len, len(host_id))) + host_id + bytes((len(eid),)) + eid
    out = X963KDF(algorithm=hashes.SHA256(), length=3 * key_len, sharedinfo=shared_info).derive(bytes(shared_secret))
    return out[:key_len], out[key_len:2 * key_len], out[2 * key_len:]


# ---- primitives --------------------------------------------------------------


def _aes_ecb(key, block):
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def _cbc(key, iv, data, encrypt):
    c = Cipher(algorithms.AES(key), modes.CBC(iv))
    op = c.encryptor() if encrypt else c.decryptor()
    return op.update(data) + op.finalize()


def _cmac(key, data):
    m = cmac.CMAC(algorithms.AES(key))
    m.update(data)
    return m.finalize()


def _pad(data):
    n = len(data) + 1
    return data + b"\x80" + b"\x00" * ((-n) % BLOCK)


def _unpad(data):
    stripped = data.rstrip(b"\x00")
    if not stripped or stripped[-1] != 0x80 or len(data) - len(stripped) >= BLOCK:
        raise BspError("padding", "expected '80 00..' padding after decryption, found ...%s"
                       % tlv.hexs(data[-BLOCK:], BLOCK))
    return stripped[:-1]


def _check_key(name, key):
    key = bytes(key)
    if len(key) != 16:
        raise ValueError("%s must be 16 bytes (AES-128), found %d" % (name, len(key)))
    return key


class _Bsp:
    def __init__(self, s_enc, s_mac, mac_chain):
        self.s_enc = _check_key("S-ENC", s_enc)
        self.s_mac = _check_key("S-MAC", s_mac)
        self.mac_chain = _check_key("MAC chaining value", mac_chain)
        self.counter = 1

    def _icv(self):
        return _aes_ecb(self.s_enc, self.counter.to_bytes(BLOCK, "big"))


class BspSender(_Bsp):
    """The SM-DP+ side: protects BPP segments (SGP.22 2.6.4.3/2.6.4.4)."""

    def wrap(self, tag, plaintext, encrypt=True):
        """One protected segment `tag L data MAC` (tag '86'/'87' encrypted, '88' MAC only)."""
        if not 0 < tag < 0x100:
            raise ValueError("segment tag must be one byte, found %X" % tag)
        plaintext = bytes(plaintext)
        limit = MAX_ENC_PLAIN if encrypt else MAX_MAC_PLAIN
        if len(plaintext) > limit:
            raise ValueError("segment plaintext of %d bytes exceeds %d (use wrap_all)" % (len(plaintext), limit))
        data = _cbc(self.s_enc, self._icv(), _pad(plaintext), True) if encrypt else plaintext
        head = tlv.header(tag, len(data) + MAC_LEN)
        full = _cmac(self.s_mac, self.mac_chain + head + data)
        self.mac_chain = full
        self.counter += 1
        return head + data + full[:MAC_LEN]

    def wrap_all(self, tag, data, encrypt=True):
        """`data` split into as many segments as needed (at least one)."""
        data = bytes(data)
        step = MAX_ENC_PLAIN if encrypt else MAX_MAC_PLAIN
        parts = [data[i:i + step] for i in range(0, len(data), step)] or [b""]
        return [self.wrap(tag, p, encrypt) for p in parts]


class BspReceiver(_Bsp):
    """The eUICC side: verifies and decrypts BPP segments."""

    def unwrap(self, tlv_bytes, decrypt=True, tag=None):
        """Plaintext of one protected segment; BspError when it does not verify.

        The state (MAC chain, counter) moves on only when the segment verifies.
        """
        raw = bytes(tlv_bytes)
        if len(raw) > MAX_SEGMENT:
            raise BspError("structure", "expected a segment of at most %d bytes, found %d" % (MAX_SEGMENT, len(raw)))
        try:
            t = tlv.decode(raw)
        except TlvError as e:
            raise BspError("structure", "expected one protected TLV: %s" % e) from None
        if t.tag > 0xFF or (tag is not None and t.tag != tag):
            raise BspError("structure", "expected segment tag %s, found %X"
                           % ("%02X" % tag if tag is not None else "of one byte", t.tag))
        if t.length < MAC_LEN:
            raise BspError("structure", "expected at least %d MAC bytes in segment %02X, found %d bytes"
                           % (MAC_LEN, t.tag, t.length))
        body = raw[:t.end - MAC_LEN]
        data = raw[t.vstart:t.end - MAC_LEN]
        full = _cmac(self.s_mac, self.mac_chain + body)
        got = raw[t.end - MAC_LEN:t.end]
        if full[:MAC_LEN] != got:
            raise BspError("mac", "segment %02X (counter %d): MAC %s does not verify (expected %s)"
                           % (t.tag, self.counter, tlv.hexs(got), tlv.hexs(full[:MAC_LEN])))
        if decrypt:
            if not data or len(data) % BLOCK:
                raise BspError("structure", "expected ciphertext in whole %d-byte blocks in segment %02X, found %d bytes"
                               % (BLOCK, t.tag, len(data)))
            plain = _unpad(_cbc(self.s_enc, self._icv(), data, False))
        else:
            plain = data
        self.mac_chain = full
        self.counter += 1
        return plain

    def unwrap_all(self, segments, decrypt=True, tag=None):
        return b"".join(self.unwrap(s, decrypt, tag) for s in segments)


# ---- BPP data objects around the keys ---------------------------------------------


def replace_session_keys_request(ppk_enc, ppk_mac, initial_mcv):
    """ReplaceSessionKeysRequest BF26 {initialMacChainingValue 80, ppkEnc 81, ppkCmac 82} (SGP.22 5.5.4)."""
    return tlv.enc(0xBF26, tlv.encode(0x80, _check_key("initialMacChainingValue", initial_mcv)),
                   tlv.encode(0x81, _check_key("ppkEnc", ppk_enc)),
                   tlv.encode(0x82, _check_key("ppkCmac", ppk_mac)))


def parse_replace_session_keys(data):
    """BF26 -> (mac_chain, ppk_enc, ppk_mac)."""
    try:
        t = tlv.decode(bytes(data))
        if t.tag != 0xBF26:
            raise BspError("structure", "expected ReplaceSessionKeysRequest BF26, found %X" % t.tag)
        return (_check_key("initialMacChainingValue", t.need(0x80, "initialMacChainingValue").value),
                _check_key("ppkEnc", t.need(0x81, "ppkEnc").value),
                _check_key("ppkCmac", t.need(0x82, "ppkCmac").value))
    except (TlvError, ValueError) as e:
        if isinstance(e, BspError):
            raise
        raise BspError("structure", "ReplaceSessionKeysRequest: %s" % e) from None


def crt_bytes(host_id, key_type=KEY_TYPE_AES, key_len=16):
    """controlRefTemplate [6] IMPLICIT: A6 {80 keyType, 81 keyLen, 84 hostId}."""
    return tlv.enc(0xA6, tlv.encode(0x80, bytes((key_type,))), tlv.encode(0x81, bytes((key_len,))),
                   tlv.encode(0x84, bytes(host_id)))


def isc_signed_bytes(bf23, euicc_otpk):
    """The bytes smdpSign covers: BF23's children before 5F37, then 5F49 otPK.EUICC.ECKA."""
    t = tlv.decode(bytes(bf23))
    if t.tag != 0xBF23:
        raise BspError("structure", "expected InitialiseSecureChannelRequest BF23, found %X" % t.tag)
    parts = [c.raw for c in t if c.tag != 0x5F37]
    return b"".join(parts) + tlv.encode(0x5F49, bytes(euicc_otpk))


def build_initialise_secure_channel(transaction_id, host_id, smdp_otpk, euicc_otpk, sign):
    """InitialiseSecureChannelRequest BF23 (SGP.22 5.5.1); sign(bytes) -> r||s with CERT.DPpb's key."""
    body = (tlv.encode(0x82, tlv.int_encode(REMOTE_OP_INSTALL_BPP))
            + tlv.encode(0x80, bytes(transaction_id))
            + crt_bytes(host_id)
            + tlv.encode(0x5F49, bytes(smdp_otpk)))
    signature = sign(body + tlv.encode(0x5F49, bytes(euicc_otpk)))
    return tlv.encode(0xBF23, body + tlv.encode(0x5F37, signature))


def parse_initialise_secure_channel(bf23):
    """BF23 -> {remote_op_id, transaction_id, key_type, key_len, host_id, smdp_otpk, smdp_sign}."""
    try:
        t = tlv.decode(bytes(bf23))
        if t.tag != 0xBF23:
            raise BspError("structure", "expected InitialiseSecureChannelRequest BF23, found %X" % t.tag)
        crt = t.need(0xA6, "controlRefTemplate")
        key_type = crt.need(0x80, "keyType").value
        key_len = crt.need(0x81, "keyLen").value
        if len(key_type) != 1 or len(key_len) != 1:
            raise BspError("structure", "expected one-byte keyType and keyLen, found %d and %d bytes"
                           % (len(key_type), len(key_len)))
        return {
            "remote_op_id": t.need(0x82, "remoteOpId").as_int(),
            "transaction_id": t.need(0x80, "transactionId").value,
            "key_type": key_type[0],
            "key_len": key_len[0],
            "host_id": crt.need(0x84, "hostId").value,
            "smdp_otpk": t.need(0x5F49, "smdpOtpk").value,
            "smdp_sign": t.need(0x5F37, "smdpSign").value,
        }
    except TlvError as e:
        raise BspError("structure", "InitialiseSecureChannelRequest: %s" % e) from None
