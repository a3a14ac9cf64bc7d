"""ES10b functions of a profile download (SGP.22 v2.5 3.1.3, 5.7.13-5.7.16; SGP.32 v1.2 5.9).

AuthenticateServer, PrepareDownload, LoadBoundProfilePackage (with its
segmenter, BppSegments: from bytes or streamed from the network) and
CancelSession, used in direct download (ES9+ to the SM-DP+) and indirect
download (relayed by the eIM over ESipa). Everything the eUICC signs is
returned with its exact bytes under "raw" and everything a server signed
is taken as whole TLVs and forwarded verbatim. Re-exported by ipa_core.es10.
"""

from ipa_core import tlv
from ipa_core import es10_decode as d
from ipa_core import es10_signed as sg
from ipa_core.errors import IpaError, ProtocolError, TlvError, Names
from ipa_core.stream import BytesReader, TlvReader

CANCEL_SESSION_ERROR = Names(((5, "invalidTransactionId"), (127, "undefinedError")))
AUTHENTICATE_ERROR_CODE = Names(((1, "invalidCertificate"), (2, "invalidSignature"),
                                 (3, "unsupportedCurve"), (4, "noSessionContext"),
                                 (5, "invalidOid"), (6, "euiccChallengeMismatch"),
                                 (7, "ciPKUnknown"), (127, "undefinedError")))
DOWNLOAD_ERROR_CODE = Names(((1, "invalidCertificate"), (2, "invalidSignature"),
                             (3, "unsupportedCurve"), (4, "noSessionContext"),
                             (5, "invalidTransactionId"), (127, "undefinedError")))
CANCEL_SESSION_REASON = {"endUserRejection": 0, "postponed": 1, "timeout": 2,
                         "pprNotAllowed": 3, "metadataMismatch": 4,
                         "loadBppExecutionError": 5, "undefinedReason": 127}
DEVICE_CAPABILITIES = ("gsmSupportedRelease", "utranSupportedRelease",
                       "cdma2000onexSupportedRelease", "cdma2000hrpdSupportedRelease",
                       "cdma2000ehrpdSupportedRelease", "eutranEpcSupportedRelease",
                       "contactlessSupportedRelease", "rspCrlSupportedVersion",
                       "nrEpcSupportedRelease", "nr5gcSupportedRelease",
                       "eutran5gcSupportedRelease", "lpaSvn", "catSupportedClasses",
                       "euiccFormFactorType", "deviceAdditionalFeatureSupport")


DEFAULT_TAC = b"\x00\x00\x00\x00"
DEFAULT_CAPABILITIES = {"eutranEpcSupportedRelease": "15.0.0"}  # deviceInfo when none is set


def encode_ctx_params1(matching_id=None, tac=b"\x00\x00\x00\x00", device_capabilities=None,
                       imei=None):
    """CtxParams1 'A0' { matchingId '80'?, deviceInfo 'A1' { tac '80', deviceCapabilities 'A1',
    imei '82'? } } for AuthenticateServer.

    device_capabilities: {name: value} with names from DEVICE_CAPABILITIES;
    a value is "x.y.z" (VersionType), an int, or the raw value bytes.
    """
    caps = []
    dc = device_capabilities or {}
    for i, name in enumerate(DEVICE_CAPABILITIES):
        v = dc.get(name)
        if v is None:
            continue
        if isinstance(v, str):
            v = bytes([int(x) for x in v.split(".")])
        elif isinstance(v, int):
            v = tlv.int_encode(v)
        # deviceAdditionalFeatureSupport (14) is a SEQUENCE: constructed tag.
        caps.append(tlv.encode((0xA0 if i == 14 else 0x80) + i, bytes(v)))
    for name in dc:
        if name not in DEVICE_CAPABILITIES:
            raise ValueError("unknown device capability %r" % (name,))
    tac = d.binary(tac, "tac")
    if len(tac) != 4:
        raise ValueError("tac: expected 4 bytes, got %d" % len(tac))
    info = tlv.enc(0xA1, tlv.encode(0x80, tac), tlv.enc(0xA1, *caps),
                   None if imei is None else tlv.encode(0x82, d.binary(imei, "imei")))
    return tlv.enc(0xA0, None if matching_id is None else tlv.encode(0x80, matching_id.encode()),
                   info)


def _download_answer(t, kinds, code_tag, names):
    """AuthenticateServer / PrepareDownload answers: CHOICE by A0/A1/A2, kept raw."""
    out = {"raw": t.raw}
    c = d.unwrap(t)
    k = d.need_any(c, (0xA0, 0xA1, 0xA2), "an %s, %s or %s alternative" % kinds)
    out["kind"] = kinds[(k.tag & 0x0F)]
    if k.tag == 0xA1:
        out["transactionId"] = k.need(0x80, "transactionId").value
        code = d.need_any(k, (0x02, 0x81), code_tag).as_int()
        out[code_tag] = code
        out["error"] = names.get(code, "undefined")
    elif k.tag == 0xA0:
        signed = k.need(0x30, "the signed data")
        out["transactionId"] = signed.need(0x80, "transactionId").value
    return out


def authenticate_server(s, server_signed1, server_signature1, euicc_ci_pk_id_to_be_used,
                        server_certificate, ctx_params1):
    """ES10b.AuthenticateServer 'BF38': every argument is a whole TLV, forwarded verbatim.

    server_signed1 '30', server_signature1 '5F37', euicc_ci_pk_id_to_be_used
    '04', server_certificate '30', ctx_params1 'A0' (see encode_ctx_params1).
    Returns {"raw" (forward as is), "kind": authenticateResponseOk |
    authenticateResponseError | compactAuthenticateResponseOk,
    "transactionId"?, "authenticateErrorCode"?, "error"?}. An error answer
    is returned, since it is forwarded to the server too.
    """
    f = "ES10b.AuthenticateServer"
    req = tlv.enc(0xBF38,
                  d.raw_tlv(server_signed1, 0x30, "serverSigned1"),
                  d.raw_tlv(server_signature1, 0x5F37, "serverSignature1"),
                  d.raw_tlv(euicc_ci_pk_id_to_be_used, 0x04, "euiccCiPKIdToBeUsed"),
                  d.raw_tlv(server_certificate, 0x30, "serverCertificate"),
                  d.raw_tlv(ctx_params1, 0xA0, "ctxParams1"))
    return _download_answer(d.exchange(s, f, req, 0xBF38),
                            ("authenticateResponseOk", "authenticateResponseError",
                             "compactAuthenticateResponseOk"),
                            "authenticateErrorCode", AUTHENTICATE_ERROR_CODE)


def prepare_download(s, smdp_signed2, smdp_signature2, smdp_certificate, hash_cc=None):
    """ES10b.PrepareDownload 'BF21' { smdpSigned2 '30', smdpSignature2 '5F37', hashCc '04'?,
    smdpCertificate '30' }: TLVs forwarded verbatim; hash_cc is the 32-byte value.

    Returns {"raw", "kind": downloadResponseOk | downloadResponseError |
    compactDownloadResponseOk, "transactionId"?, "downloadErrorCode"?, "error"?}.
    """
    f = "ES10b.PrepareDownload"
    hcc = None
    if hash_cc is not None:
        hash_cc = bytes(hash_cc)
        if len(hash_cc) != 32:
            raise ValueError("hashCc: expected 32 bytes, got %d" % len(hash_cc))
        hcc = tlv.encode(0x04, hash_cc)
    req = tlv.enc(0xBF21,
                  d.raw_tlv(smdp_signed2, 0x30, "smdpSigned2"),
                  d.raw_tlv(smdp_signature2, 0x5F37, "smdpSignature2"),
                  hcc,
                  d.raw_tlv(smdp_certificate, 0x30, "smdpCertificate"))
    return _download_answer(d.exchange(s, f, req, 0xBF21),
                            ("downloadResponseOk", "downloadResponseError",
                             "compactDownloadResponseOk"),
                            "downloadErrorCode", DOWNLOAD_ERROR_CODE)


MAX_SEGMENT = 2048  # bytes of one STORE DATA segment; SGP.22 2.5.3: an 86/87/88 TLV is <= 1020
MAX_PACKAGE = 4 * 1024 * 1024  # bytes of a streamed BF36 by default (Ipa config max_package)


class BppSegments:
    """The STORE DATA segments of a BoundProfilePackage 'BF36' read from a stream (SGP.22 2.5.5).

    (1) BF36 tag+length with the whole InitialiseSecureChannel BF23; (2) A0
    with its 87; (3) A1 tag+length, then each 88 alone; (4) A2 with its 87
    (optional); (5) A3 tag+length, then each 86 alone. Each segment is read
    from `tr` (an ipa_core.stream.TlvReader) only when asked for, so one
    segment (at most `max_segment` bytes) is in RAM, whatever the profile size.

        segs = BppSegments(TlvReader(reader))
        seg = segs.next()     # bytes-like, or None after the last
        segs.skip()           # (start, end) offsets of the next one, not kept; None at the end
        segs.total()          # segments in all: exact when known, else an estimate
        segs.close()          # closes the reader (what is left is discarded)

    `end`: where the enclosing data ends (absolute offset in tr), None: the
    body. `first`: (start, tag, length, header bytes) of the BF36 header when
    the caller already read it. `max_package`: the longest BF36 accepted (its
    length is known from its header, before any segment is read). Structure
    errors are ProtocolError/TlvError naming the offset; a body that ends
    early is a ProtocolError; the first error is kept in `error`.
    """

    def __init__(self, tr, end=None, max_segment=MAX_SEGMENT, first=None, total=None,
                 max_package=MAX_PACKAGE):
        self.tr = tr
        self.end = end
        self.max_segment = max_segment
        self.max_package = max_package
        self.count = 0  # segments handed out
        self.done = False
        self.error = None
        self.start = tr.offset if first is None else first[0]
        self.bpp_end = None
        self.head_len = 0  # bytes of the BF36 tag+length (they open segment 1)
        self._first = first
        self._known = total
        self._copy = True
        self._pending = None
        self._gen = self._walk()

    def _seg(self, at, hdr, n, what):
        size = len(hdr) + n
        if size > self.max_segment:
            raise ProtocolError("BoundProfilePackage: %s at offset %d makes a segment of %d bytes,"
                                " expected at most %d" % (what, at, size, self.max_segment))
        if not self._copy:
            self.tr.skip(n, what)
            return None
        out = bytearray(size)
        out[0:len(hdr)] = hdr
        if n:
            self.tr.read_into(memoryview(out)[len(hdr):], what)
        return out

    def _walk(self):
        tr = self.tr
        if self._first is None:
            start = tr.offset
            tag, n, h0 = tr.header(self.end)
        else:
            start, tag, n, h0 = self._first
            self._first = None
        if tag != 0xBF36:
            raise ProtocolError("BoundProfilePackage: expected tag BF36, got %X" % tag)
        if self.max_package is not None and len(h0) + n > self.max_package:
            raise ProtocolError("BoundProfilePackage: %d bytes, over the limit of %d (setting "
                                "max_package)" % (len(h0) + n, self.max_package))
        end = tr.offset + n
        self.bpp_end = end
        self.head_len = len(h0)
        tag = None
        if tr.offset < end:
            tag, n, h1 = tr.header(end)
        if tag != 0xBF23:
            raise ProtocolError("BoundProfilePackage: expected InitialiseSecureChannel BF23 first")
        yield self._seg(start, h0 + h1, n, "BF36 with InitialiseSecureChannel BF23")
        last = 0
        while tr.offset < end:
            at = tr.offset
            tag, n, h = tr.header(end)
            if tag not in (0xA0, 0xA1, 0xA2, 0xA3) or tag <= last:
                raise ProtocolError("BoundProfilePackage: expected A0, A1, A2 (optional), A3 in "
                                    "order after BF23, got %X" % tag)
            last = tag
            if tag in (0xA0, 0xA2):
                yield self._seg(at, h, n, "%X" % tag)
                continue
            yield self._seg(at, h, 0, "%X" % tag)
            want = 0x88 if tag == 0xA1 else 0x86
            kend = tr.offset + n
            while tr.offset < kend:
                at = tr.offset
                ctag, cn, ch = tr.header(kend)
                if ctag != want:
                    raise ProtocolError("BoundProfilePackage: expected %X in %X, got %X"
                                        % (want, tag, ctag))
                yield self._seg(at, ch, cn, "%X in %X" % (ctag, tag))
        if last != 0xA3:
            raise ProtocolError("BoundProfilePackage: sequenceOf86 (A3) missing")

    def _step(self, copy):
        if self._pending is not None:
            seg = self._pending
            self._pending = None
            self.count += 1
            return seg
        if self.done:
            return None
        self._copy = copy
        at = self.tr.offset
        try:
            seg = next(self._gen)
        except StopIteration:
            self.done = True
            return None
        except IpaError as e:
            self.error = e
            self.done = True
            raise
        self.count += 1
        return seg if copy else (at, self.tr.offset)

    def next(self):
        """The next segment (a bytearray), or None after the last."""
        return self._step(True)

    def peek(self):
        """The next segment without handing it out (next() returns it)."""
        if self._pending is None:
            seg = self._step(True)
            if seg is not None:
                self.count -= 1
                self._pending = seg
        return self._pending

    def transaction_id(self):
        """The transactionId in InitialiseSecureChannel 'BF23' (in the first segment, peeked):
        the one the eUICC checks against its session."""
        first = self.peek()
        if first is None:
            raise ProtocolError("BoundProfilePackage: no segment")
        c = tlv.decode(first, offset=self.head_len).need(
            0x80, "transactionId in initialiseSecureChannelRequest")
        if not 1 <= c.length <= 16:
            raise TlvError(c.vstart, "a transactionId of 1..16 bytes", "%d bytes" % c.length)
        return bytes(c.value)

    def skip(self):
        """(start, end) of the next segment, read and dropped; None after the last."""
        if self._pending is not None:
            raise ValueError("skip() after peek()")
        return self._step(False)

    def total(self):
        """Segments in all: exact once known (all read, or given), else an estimate from the
        bytes left at the average segment size so far (at least one more)."""
        if self.done:
            return self.count
        if self._known is not None:
            return self._known
        ahead = 1 if self._pending is not None else 0
        used = self.tr.offset - self.start
        if self.bpp_end is None or used <= 0 or self.count + ahead == 0:
            return self.count + ahead + 1
        left = self.bpp_end - self.tr.offset
        guess = (left * (self.count + ahead) + used // 2) // used
        return self.count + ahead + max(guess, 1 if left > 0 else 0)

    def finish(self):
        """After an early end (a ProfileInstallationResult): read the rest without keeping it,
        to count it; the total, or the estimate when the rest does not read."""
        if self._known is not None:
            return self._known
        try:
            self._pending = None
            while self.skip() is not None:
                pass
        except IpaError:
            return self.total()
        return self.count

    def close(self):
        """Close the underlying reader (what is left of the body is discarded)."""
        self.done = True
        self._pending = None
        tr = self.tr
        if tr is not None:
            tr.close()


def _bytes_segments(bpp, max_segment=MAX_SEGMENT, total=None):
    return BppSegments(TlvReader(BytesReader(bpp), "BoundProfilePackage"), None, max_segment,
                       total=total)


def bpp_segments(bpp, max_segment=MAX_SEGMENT):
    """The STORE DATA segments of a BoundProfilePackage 'BF36' in RAM as (start, end) offsets.

    The same walk as BppSegments over the bytes, without copies; the whole
    package is checked (nothing may follow the BF36).
    """
    segs = _bytes_segments(bpp, max_segment)
    spans = []
    while True:
        span = segs.skip()
        if span is None:
            break
        spans.append(span)
    tr = segs.tr
    if not tr.at_end():
        raise TlvError(tr.offset, "end of data after tag BF36",
                       "%d trailing bytes" % (len(bpp) - tr.offset))
    return spans


def load_bound_profile_package(s, bpp, progress=None):
    """ES10b.LoadBoundProfilePackage: send the BPP in segments; return the ProfileInstallationResult.

    `bpp`: the BF36 bytes (the whole package is checked before anything is
    sent) or a BppSegments read from the network (checked as it comes: a
    broken one ends the load with its error, kept in bpp.error).
    progress(done, total) after each segment (total: BppSegments.total()).
    Any segment may be answered early with a ProfileInstallationResult
    'BF37' (an error): sending stops and it is returned. The result (success
    or "error") is a dict from es10_signed.profile_installation_result whose
    "raw" is forwarded as is, plus "segmentsSent" and "segmentsTotal".
    """
    f = "ES10b.LoadBoundProfilePackage"
    segs = bpp
    if not isinstance(bpp, BppSegments):
        segs = _bytes_segments(bpp, total=len(bpp_segments(bpp)))
    if progress is not None:
        progress(0, segs.total())
    while True:
        seg = segs.next()
        if seg is None:
            break
        rsp = s.store_data(seg)
        seg = None
        if progress is not None:
            progress(segs.count, segs.total())
        if rsp:
            t = tlv.decode(rsp)
            if t.tag != 0xBF37:
                raise TlvError(0, "a BF37 ProfileInstallationResult from " + f, "tag %X" % t.tag)
            pir = sg.profile_installation_result(t)
            pir["segmentsSent"] = segs.count
            pir["segmentsTotal"] = segs.finish()
            return pir
    raise ProtocolError("%s: no ProfileInstallationResult after the last of %d segments"
                        % (f, segs.count))


def cancel_session(s, transaction_id, reason):
    """ES10b.CancelSession 'BF41' { transactionId '80', reason '81' }.

    reason: an int or a CANCEL_SESSION_REASON name. Returns {"raw" (the
    whole BF41 answer, forwarded as is), "kind", "transactionId"?, "smdpOid"?,
    "reason"?}; cancelSessionResponseError -> FunctionError.
    """
    f = "ES10b.CancelSession"
    if isinstance(reason, str):
        if reason not in CANCEL_SESSION_REASON:
            raise ValueError("unknown CancelSessionReason %r" % (reason,))
        reason = CANCEL_SESSION_REASON[reason]
    t = d.call(s, f, 0xBF41, tlv.encode(0x80, d.binary(transaction_id, "transactionId")),
               tlv.encode(0x81, tlv.int_encode(reason)))
    c = d.need_any(d.unwrap(t), (0xA0, 0x81, 0xA2), "cancelSessionResponseOk (A0), error (81) "
                   "or compactCancelSessionResponseOk (A2)")
    if c.tag == 0x81:
        raise d.fail(f, c.as_int(), CANCEL_SESSION_ERROR)
    out = {"raw": t.raw}
    signed = c.need(0x30, "the signed part")
    if c.tag == 0xA0:
        out["kind"] = "cancelSessionResponseOk"
        d.fields(signed, {0x80: ("transactionId", d.v_bytes), 0x81: ("smdpOid", d.v_oid),
                          0x82: ("reason", d.v_int)}, out)
    else:
        out["kind"] = "compactCancelSessionResponseOk"
        d.fields(signed, {0x80: ("reason", d.v_int)}, out)
    return out
