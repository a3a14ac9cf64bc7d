"""A small, well-formed test profile: its unprotected package (SAIP PE sequence) and its metadata.

    upp = build_profile_package("89000123456789012341", size=100_000)
    md  = store_metadata("89000123456789012341", "ipa-iot SP", "Test profile")
    info = parse_profile_package(upp)   # {"iccid": ..., "pes": [...], "size": ...}

The package follows the TCA eUICC Profile Package (PEDefinitions, AUTOMATIC
TAGS): a sequence of ProfileElement CHOICE values, each its own TLV:

    A0 ProfileHeader {80 major 81 minor 82 profileType 83 iccid
                      A5 mandatory services {81 usim, 84 milenage} A6 GFSTE list}
    A1 genericFileManagement {A0 PEHeader, A1 {30 {80 filePath 62 createFCP
                      81 fillFileContent}}} ...   (filler EFs under DF 7F90, up to `size`)
    AA end {A0 PEHeader}

The filler files are transparent EFs in a proprietary DF: enough to make the
package big for benches, not a network-usable profile. StoreMetadataRequest
(BF25, SGP.22 5.5.3) carries the same ICCID.
"""

from ipa_core import tlv
from ipa_core.errors import TlvError

MAJOR, MINOR = 2, 3
FILLER_DF = b"\x7f\x90"
MAX_EF = 0x7F00             # one filler EF's content (efFileSize is 2 bytes here)
PE_NAMES = {0xA0: "header", 0xA1: "genericFileManagement", 0xA2: "pinCodes", 0xA3: "pukCodes",
            0xA4: "akaParameter", 0xA6: "securityDomain", 0xA8: "application", 0xAA: "end",
            0xB0: "mf", 0xB3: "usim"}
PROFILE_CLASSES = {"test": 0, "provisioning": 1, "operational": 2}


def iccid_bytes(iccid):
    """ICCID digits (19 or 20, 'F'-padded) -> the 10 swapped-nibble bytes of EF.ICCID."""
    digits = str(iccid).upper()
    if not (18 <= len(digits) <= 20 and all(c in "0123456789F" for c in digits)):
        raise ValueError("ICCID: expected 18..20 digits, found %r" % (iccid,))
    digits = digits + "F" * (20 - len(digits))
    return bytes(int(digits[i + 1], 16) << 4 | int(digits[i], 16) for i in range(0, 20, 2))


def iccid_digits(b):
    """The 10 bytes of EF.ICCID -> digits without 'F' padding."""
    s = "".join("%X%X" % (x & 0xF, x >> 4) for x in bytes(b))
    return s.rstrip("F")


def _pe_header(ident):
    return tlv.encode(0xA0, tlv.encode(0x81, tlv.int_encode(ident)))


def _header(iccid, profile_type):
    services = tlv.encode(0x81, b"") + tlv.encode(0x84, b"")   # usim, milenage (NULLs)
    return tlv.enc(0xA0,
                   tlv.encode(0x80, tlv.int_encode(MAJOR)),
                   tlv.encode(0x81, tlv.int_encode(MINOR)),
                   tlv.encode(0x82, profile_type.encode("utf-8")),
                   tlv.encode(0x83, iccid_bytes(iccid)),
                   tlv.encode(0xA5, services),
                   tlv.encode(0xA6, b""))


def _filler_pe(ident, index, content):
    fid = bytes((0x6F, 0x00 + (index & 0xFF)))
    fcp = tlv.enc(0x62,
                  tlv.encode(0x82, b"\x41\x21"),          # transparent working EF
                  tlv.encode(0x83, fid),
                  tlv.encode(0x8A, b"\x05"),
                  tlv.encode(0x80, len(content).to_bytes(2, "big")))
    cmd = tlv.enc(0x30, tlv.encode(0x80, FILLER_DF), fcp, tlv.encode(0x81, content))
    return tlv.enc(0xA1, _pe_header(ident), tlv.encode(0xA1, cmd))


def build_profile_package(iccid, size=2048, profile_type="ipa-iot test profile", seed=0):
    """The unprotected profile package as bytes, at least `size` bytes long (filler EFs).

    Content is deterministic for a given (iccid, size, seed).
    """
    if size < 0 or size > 16 * 1024 * 1024:
        raise ValueError("size: expected 0..16 MiB, found %d" % size)
    head = _header(iccid, profile_type)
    pes = [head]
    total = len(head) + 8   # + PE-End
    ident = 1
    index = 0
    while total < size or index == 0:
        want = min(MAX_EF, max(1, size - total - 40))
        content = bytes((seed + index * 31 + i * 7) & 0xFF for i in range(want))
        pe = _filler_pe(ident, index, content)
        pes.append(pe)
        total += len(pe)
        ident += 1
        index += 1
    pes.append(tlv.encode(0xAA, _pe_header(ident)))
    return b"".join(pes)


def parse_profile_package(data):
    """Check the PE sequence of a package and answer {"iccid", "pes": [names], "size"}.

    TlvError / ValueError when it does not start with a ProfileHeader, does
    not end with PE-End, or a PE does not decode.
    """
    data = bytes(data)
    pes = tlv.decode_all(data)
    if not pes or pes[0].tag != 0xA0:
        raise ValueError("profile package: expected ProfileHeader A0 first, found %s"
                         % ("%X" % pes[0].tag if pes else "nothing"))
    if pes[-1].tag != 0xAA:
        raise ValueError("profile package: expected PE-End AA last, found %X" % pes[-1].tag)
    for pe in pes:
        list(pe)   # each PE is constructed and its children decode
    iccid = pes[0].need(0x83, "iccid").value
    if len(iccid) != 10:
        raise TlvError(pes[0].vstart, "a 10-byte iccid", "%d bytes" % len(iccid))
    return {"iccid": iccid_digits(iccid), "pes": [PE_NAMES.get(p.tag, "%X" % p.tag) for p in pes],
            "size": len(data)}


def store_metadata(iccid, service_provider_name, profile_name, profile_class="operational",
                   notifications=()):
    """StoreMetadataRequest BF25 (SGP.22 5.5.3 / RSPDefinitions).

    notifications: (operation, address) pairs, operation one of "install",
    "enable", "disable", "delete" -> notificationConfigurationInfo B6.
    """
    if profile_class not in PROFILE_CLASSES:
        raise ValueError("profileClass: expected one of %s, found %r" % (", ".join(PROFILE_CLASSES), profile_class))
    spn = service_provider_name.encode("utf-8")
    name = profile_name.encode("utf-8")
    if len(spn) > 32 or len(name) > 64:
        raise ValueError("serviceProviderName <= 32 and profileName <= 64 bytes, found %d and %d"
                         % (len(spn), len(name)))
    nci = None
    if notifications:
        order = ("install", "enable", "disable", "delete")
        items = []
        for op, addr in notifications:
            if op not in order:
                raise ValueError("notification operation: expected one of %s, found %r" % (order, op))
            items.append(tlv.enc(0x30, tlv.encode(0x03, tlv.bits_encode([op], order)),
                                 tlv.encode(0x0C, addr.encode("utf-8"))))
        nci = tlv.encode(0xB6, b"".join(items))
    pclass = PROFILE_CLASSES[profile_class]
    return tlv.enc(0xBF25,
                   tlv.encode(0x5A, iccid_bytes(iccid)),
                   tlv.encode(0x91, spn),
                   tlv.encode(0x92, name),
                   tlv.encode(0x95, tlv.int_encode(pclass)) if pclass != 2 else None,
                   nci)


def parse_store_metadata(data):
    """BF25 -> {"iccid", "serviceProviderName", "profileName", "profileClass"}."""
    t = tlv.decode(bytes(data))
    if t.tag != 0xBF25:
        raise TlvError(0, "StoreMetadataRequest BF25", "%X" % t.tag)
    pc = t.find(0x95)
    return {"iccid": iccid_digits(t.need(0x5A, "iccid").value),
            "serviceProviderName": t.need(0x91, "serviceProviderName").as_str(),
            "profileName": t.need(0x92, "profileName").as_str(),
            "profileClass": pc.as_int() if pc is not None else 2}
