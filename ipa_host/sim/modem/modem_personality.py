"""Personalities of the simulated modem: what each one does differently from TS 27.007.

Each personality is a set of options on top of DEFAULTS; `resolve(name,
overrides)` merges them. The quirks come from the modem fact sheet (vendor AT
manuals and public issue trackers of other eSIM tools); the vendor named next
to each personality is where that quirk was seen, used as its identity
(AT+CGMI/CGMM/CGMR) so an identity-keyed quirk table meets a realistic name.

Options (all personalities accept all of them as keyword overrides):

    manufacturer, model, revision, imei   identity answers (CGMI/CGMM/CGMR/CGSN, ATI)
    echo            echo input at power-on (V.250 E1)
    sticky_echo     ATE0 answers OK but echo stays on
    test_cmds       "=?" test commands answer (False: every =? answers ERROR)
    logical_channels  AT+CCHO/CGLA/CCHC exist (False: they answer ERROR)
    csim_basic_only AT+CSIM with channel bits in CLA answers ERROR (Quectel EG25)
    upper_hex_only  lower-case hex in AT+CSIM/CGLA answers ERROR (Qualcomm-based)
    bare_ccho       AT+CCHO answers a bare "<id>" line instead of "+CCHO: <id>"
    bare_apdu       "+CSIM:"/"+CGLA:" answers without the space and with unquoted hex
    session_ids     "int" (decimal, large) or "hex16" (16 hex digits, e.g. 000000000385a7cf)
    cmee            +CME ERROR mode at power-on (0 ERROR, 1 numeric, 2 verbose)
    cmee_fixed      errors are always "+CME ERROR: <n>" whatever AT+CMEE says
    urcs            URCs (+CREG/+QIND) before and inside answers, RDY once at the start
    stray_line      a stray text line before each +CSIM:/+CGLA: line
    cut_at          None or n: a CSIM/CGLA answer (data + SW) longer than n bytes is
                    silently cut to its first n bytes, the status word with the rest
    le00_collect    None, "cut" or "61xx": an APDU with Le=00 that the card answers
                    61xx is completed by the modem (GET RESPONSE inside); "cut" keeps
                    the first le00_keep data bytes and the final SW (the rest is lost),
                    "61xx" announces the rest with 61xx and serves it to the caller's
                    GET RESPONSE from the modem's buffer
    le00_keep       data bytes kept by le00_collect (256)
    delay           seconds before answering each command that reaches the card
    dead_after      stop answering after this many command lines (None: never)
    garbage         random non-ASCII bytes before and after every answer
    reset_after     after this many APDUs, the next one gets no answer: the modem
                    reboots (RDY and boot URCs, channels closed); once
    reset_executes  the card still processes the APDU the reset interrupts
    boot_delay      seconds the reboot takes (input is lost meanwhile)
    lost_ok_after   None or n: after n APDUs, the next APDU's answer line comes without
                    its final OK (the modem loses it); once
    busy_after      None or n: after n APDUs, the next busy_count CSIM/CGLA commands answer
                    "+CME ERROR: 14" (SIM busy) without reaching the card
    busy_count      how many of those (2)
    max_channels    logical channels the card offers besides the basic one (3)
    seed            seed of the random generator (garbage bytes, URC choice)

The network (registration and data bearers, modem_at.py):

    reg_commands    which of AT+CREG/CGREG/CEREG exist (the others answer ERROR); nRF91:
                    AT+CEREG only
    attach_delay    seconds from AT+CFUN=1 (or a reboot) until the modem is registered
    roaming         registered roaming (<stat> 5) instead of home (1)
    reattach        False: after the SIM was read again (CFUN back to 1) the modem never
                    registers (a fault: searching for ever)
    no_network_iccids  profiles (ICCIDs) that find no network: with one of them read from
                    the SIM the modem searches for ever (a profile without coverage)
    bearer_at_start the modem starts with its data bearers up (PDP context 1, SIM7080 APP
                    network 0), as one an earlier session left running; False: a cold
                    start, the host brings them up
    data_commands   vendor data commands besides AT+CGDCONT/CGACT: None, "quectel"
                    (AT+QICSGP/QIACT/QIDEACT) or "sim7080" (AT+CNCFG/CNACT)
    sim_urcs        +CPIN: READY when the SIM is read again after AT+CFUN=1

The modem's own HTTP(S) stack (modem_http.py; each stack's module says what it serves):

    http_stack      None, "quectel" (AT+QHTTP*, QSSLCFG, QFUPL), "sim7080" (AT+SH*,
                    CFSWFILE, CSSLCFG) or "simcom" (A76xx/SIM7600 AT+HTTP*, CCERTDOWN,
                    CSSLCFG); the other vendors' commands answer ERROR
    http_error      None or the stack error code every request ends with, after the
                    body was taken (Quectel +QHTTPPOST: <err>, SIM7080 +SHREQ status 6xx,
                    A76xx +HTTPACTION: 1,<errcode>,0); nothing reaches the server
    http_read_block None or n: response bytes go out in pieces of n bytes (A76xx: one
                    "+HTTPREAD: <n>" block per piece), http_read_pause seconds apart
    http_read_pause seconds between those pieces
    qhttp_reqheader_add  AT+QHTTPCFG="reqheader/add" exists (Unisoc-based EG915U/EC200U);
                    False: custom headers only with AT+QHTTPCFG="requestheader",1
    sh_body_max     SIM7080: largest AT+SHCONF="BODYLEN" (4096)
    sh_read_max     SIM7080: largest <datalen> of one AT+SHREAD (2048)
"""

DEFAULTS = {
    "manufacturer": "IPA Sim",
    "model": "SIM-MODEM-1",
    "revision": "SIMMODEM_1.0.0",
    "imei": "490154203237518",
    "echo": False,
    "sticky_echo": False,
    "test_cmds": True,
    "logical_channels": True,
    "csim_basic_only": False,
    "upper_hex_only": False,
    "bare_ccho": False,
    "bare_apdu": False,
    "session_ids": "int",
    "cmee": 0,
    "cmee_fixed": False,
    "urcs": False,
    "stray_line": False,
    "cut_at": None,
    "le00_collect": None,
    "le00_keep": 256,
    "delay": 0.0,
    "dead_after": None,
    "garbage": False,
    "reset_after": None,
    "reset_executes": True,
    "boot_delay": 0.2,
    "lost_ok_after": None,
    "busy_after": None,
    "busy_count": 2,
    "max_channels": 3,
    "seed": 1,
    "http_stack": None,
    "http_error": None,
    "http_read_block": None,
    "http_read_pause": 0.0,
    "qhttp_reqheader_add": True,
    "sh_body_max": 4096,
    "sh_read_max": 2048,
    "reg_commands": ("CREG", "CGREG", "CEREG"),
    "attach_delay": 0.3,
    "roaming": False,
    "reattach": True,
    "no_network_iccids": (),
    "bearer_at_start": True,
    "data_commands": None,
    "sim_urcs": True,
}

QUECTEL_HTTP = {"manufacturer": "Quectel", "model": "EG915U", "revision": "EG915UEUABR03A01M08",
                "http_stack": "quectel", "cmee": 1, "data_commands": "quectel"}
SIM7080 = {"manufacturer": "SIMCOM INCORPORATED", "model": "SIMCOM_SIM7080G",
           "revision": "1951B16SIM7080", "http_stack": "sim7080", "data_commands": "sim7080"}
A7670 = {"manufacturer": "SIMCOM INCORPORATED", "model": "A7670E-LASE",
         "revision": "A7670M7_V1.11.1", "http_stack": "simcom"}

PERSONALITIES = {
    # 3GPP TS 27.007 to the letter: +CCHO: <id>, +CGLA: <len>,"<hex>", ERROR.
    "textbook": {},
    # Fibocom FM350 / Sequans Monarch: bare id line, "+CGLA:" without space, unquoted hex.
    "bare_ccho": {"manufacturer": "Fibocom Wireless Inc.", "model": "FM350-GL",
                  "revision": "81600.0000.00.29.21.11", "bare_ccho": True, "bare_apdu": True,
                  "session_ids": "hex16"},
    # Fibocom FG132-GL / Quectel EM05-G: the commands work, their =? forms answer ERROR.
    "no_test_cmds": {"manufacturer": "Quectel", "model": "EM05-G",
                     "revision": "EM05GFAR07A07M1G", "test_cmds": False,
                     "data_commands": "quectel"},
    # Dell DW5821e (Qualcomm): only AT+CSIM, and only upper-case hex.
    "csim_only": {"manufacturer": "Dell Inc.", "model": "DW5821e Snapdragon X20 LTE",
                  "revision": "T77W968.F1.0.0.4.3.GC.013", "logical_channels": False,
                  "upper_hex_only": True},
    # Quectel-style chatter: echo that ATE0 does not stop, URCs everywhere, stray lines.
    "echo_urc": {"manufacturer": "Quectel", "model": "BG95-M3", "revision": "BG95M3LAR02A03",
                 "echo": True, "sticky_echo": True, "urcs": True, "stray_line": True,
                 "data_commands": "quectel"},
    # nRF9151-style: every failure is "+CME ERROR: <n>", never a bare ERROR; LTE only
    # (AT+CEREG, no AT+CREG/CGREG), no +CPIN URC unless subscribed (%XSIM).
    "cme_error": {"manufacturer": "Nordic Semiconductor ASA", "model": "nRF9151-LACA",
                  "revision": "mfw_nrf91x1_2.0.2", "cmee": 1, "cmee_fixed": True,
                  "reg_commands": ("CEREG",), "sim_urcs": False},
    # Huawei MT5700: answers cut at 256 bytes (SW lost); with Le=00 the modem does GET
    # RESPONSE itself (as Sequans does) and keeps 256 data bytes + the final SW.
    "truncate256": {"manufacturer": "Huawei Technologies Co., Ltd.", "model": "MT5700M-CN",
                    "revision": "11.617.01.00.00", "cut_at": 256, "le00_collect": "cut"},
    # Faults on a textbook modem.
    "slow": {"delay": 2.0},
    "dead": {"dead_after": 20},
    "garbage": {"garbage": True},
    "reset_mid_apdu": {"reset_after": 6},
    # The final OK after one +CGLA/+CSIM answer (GetEID's, in `ipa info`) is lost.
    "lost_ok": {"lost_ok_after": 3},
    # The SIM is busy (just refreshed) for two commands in a row.
    "sim_busy": {"busy_after": 3, "busy_count": 2},
    # Modems with their own HTTP(S) stack (modem_http*.py), for MCUs without TLS.
    # Quectel EG915U (Unisoc): AT+QHTTP*, AT+QSSLCFG, AT+QFUPL; numeric +CME ERROR by default.
    "quectel_http": QUECTEL_HTTP,
    # SIMCom SIM7080G: AT+SH*, AT+CFSWFILE, AT+CSSLCFG="convert".
    "sim7080": SIM7080,
    # SIMCom A7670E (A76xx, like SIM7600): AT+HTTP*, AT+CCERTDOWN, AT+CSSLCFG.
    "a7670": A7670,
    # Faults of those stacks: every request ends with "+QHTTPPOST: 702" (HTTP(S) timeout);
    # an A7670 that trickles each response in 100-byte +HTTPREAD blocks, 50 ms apart.
    "quectel_http_error": dict(QUECTEL_HTTP, http_error=702),
    "a7670_slow_read": dict(A7670, http_read_block=100, http_read_pause=0.05),
}


def resolve(personality, overrides=None):
    """The option dict of `personality` with `overrides` applied (ValueError on unknown names)."""
    if personality not in PERSONALITIES:
        raise ValueError("unknown modem personality %r (choose from %s)"
                         % (personality, ", ".join(sorted(PERSONALITIES))))
    cfg = dict(DEFAULTS)
    cfg.update(PERSONALITIES[personality])
    for key, value in (overrides or {}).items():
        if key not in DEFAULTS:
            raise ValueError("unknown modem option %r (known: %s)" % (key, ", ".join(sorted(DEFAULTS))))
        cfg[key] = value
    if cfg["le00_collect"] not in (None, "cut", "61xx"):
        raise ValueError("le00_collect must be None, 'cut' or '61xx', not %r" % (cfg["le00_collect"],))
    if cfg["cut_at"] is not None and not 4 <= cfg["cut_at"]:
        raise ValueError("cut_at must be None or at least 4 bytes, not %r" % (cfg["cut_at"],))
    if cfg["session_ids"] not in ("int", "hex16"):
        raise ValueError("session_ids must be 'int' or 'hex16', not %r" % (cfg["session_ids"],))
    if cfg["cmee"] not in (0, 1, 2):
        raise ValueError("cmee must be 0, 1 or 2, not %r" % (cfg["cmee"],))
    for key in ("lost_ok_after", "busy_after"):
        if cfg[key] is not None and (isinstance(cfg[key], bool) or not isinstance(cfg[key], int)
                                     or cfg[key] < 0):
            raise ValueError("%s must be None or an APDU count >= 0, not %r" % (key, cfg[key]))
    if isinstance(cfg["busy_count"], bool) or not isinstance(cfg["busy_count"], int) \
            or not 0 <= cfg["busy_count"] <= 1000:
        raise ValueError("busy_count must be 0..1000, not %r" % (cfg["busy_count"],))
    if not 0 <= cfg["max_channels"] <= 19:
        raise ValueError("max_channels must be 0..19, not %r" % (cfg["max_channels"],))
    for key in ("delay", "boot_delay", "http_read_pause", "attach_delay"):
        if cfg[key] < 0:
            raise ValueError("%s must be >= 0 seconds, not %r" % (key, cfg[key]))
    if cfg["http_stack"] not in (None, "quectel", "sim7080", "simcom"):
        raise ValueError("http_stack must be None, 'quectel', 'sim7080' or 'simcom', not %r"
                         % (cfg["http_stack"],))
    err = cfg["http_error"]
    if err is not None and (isinstance(err, bool) or not isinstance(err, int)
                            or not 600 <= err <= 799):
        raise ValueError("http_error must be None or a stack error code 600..799, not %r" % (err,))
    block = cfg["http_read_block"]
    if block is not None and (isinstance(block, bool) or not isinstance(block, int) or block < 1):
        raise ValueError("http_read_block must be None or at least 1 byte, not %r" % (block,))
    if not 1 <= cfg["sh_read_max"] <= 65536 or not 1 <= cfg["sh_body_max"] <= 1 << 20:
        raise ValueError("sh_read_max / sh_body_max out of range: %r / %r"
                         % (cfg["sh_read_max"], cfg["sh_body_max"]))
    regs = cfg["reg_commands"]
    if isinstance(regs, str) or not all(r in ("CREG", "CGREG", "CEREG") for r in regs):
        raise ValueError("reg_commands must be a tuple of CREG, CGREG, CEREG, not %r" % (regs,))
    cfg["reg_commands"] = tuple(regs)
    iccids = cfg["no_network_iccids"]
    if isinstance(iccids, str) or not all(isinstance(i, str) for i in iccids):
        raise ValueError("no_network_iccids must be a tuple of ICCID strings, not %r" % (iccids,))
    cfg["no_network_iccids"] = tuple(iccids)
    if cfg["data_commands"] not in (None, "quectel", "sim7080"):
        raise ValueError("data_commands must be None, 'quectel' or 'sim7080', not %r"
                         % (cfg["data_commands"],))
    cfg["personality"] = personality
    return cfg
