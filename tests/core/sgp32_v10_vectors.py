"""SGP.32 v1.0 messages written by hand from the public v1.0 ASN.1 module (SGP32Definitions,
sgp32v1), independently of every encoder in the project. Each vector's comment derives it:
tags from the module, AUTOMATIC TAGS applied by hand (X.680 25.3: untagged components are
numbered [0], [1], ... only when *no* component of that SEQUENCE/CHOICE carries a written
tag; such a tag is implicit, except on a CHOICE, which is always explicit; an implicit tag
on a tagged type replaces its outer tag), lengths counted by hand.

Checked against the IPA (tests/core/test_sgp32_v10.py, CPython and MicroPython) and against
both simulators' own codecs (tests/host/test_sgp32_v10_sims.py). Plain data: no imports.
"""

EID = "89049032123451234512345678901235"
SIG = "AB" * 64
EIM1 = "65696D31"  # "eim1"
DP = "64702E6578616D706C65"  # "dp.example", 10 bytes
CHALLENGE = "00112233445566778899AABBCCDDEEFF"

# EuiccPackageResult ::= [81] CHOICE { euiccPackageResultSigned, ... }: all alternatives
# untagged -> automatic [0] 'A0'. EuiccPackageResultDataSigned { eimId [0] 80 04 "eim1",
# counterValue [1] 81 01 05, transactionId [2] absent, seqNumber [3] 83 01 07, euiccResult
# SEQUENCE OF 30 03 { enableResult [3] 83 01 00 } } = 6 + 3 + 3 + 5 = 17 (0x11);
# euiccSignEPR [APPLICATION 55] 5F37 40 <64>: A0 content 19 + 67 = 86 (0x56); BF51 88 (0x58).
EPR = "BF5158" "A056" "3011" "8004" + EIM1 + "810105" "830107" "3003830100" "5F3740" + SIG
# An SGP32-PendingNotification (otherSignedNotification '30'), shape only: 12 bytes.
NOTIF = "300A" "BF2F03800107" "5F3701AA"

# GetEimPackageRequest ::= [79] SEQUENCE { eidValue [APPLICATION 26] 5A, notifyStateChange
# [0] NULL 80 00, rPLMN [1] 81 03 } - no stateChangeCause in v1.0: 18 + 2 + 5 = 25 (0x19).
GET_EIM_PACKAGE = "BF4F19" "5A10" + EID + "8000" "810321F354"

# ProvideEimPackageResult ::= [80] CHOICE (no eidValue): euiccPackageResult [81] as is.
PROVIDE_EPR = "BF505B" + EPR  # 91 bytes
# ePRAndNotifications SEQUENCE (untagged: siblings are tagged -> universal 30) {
#   euiccPackageResult [81] BF51, notificationList [43] SGP32-RetrieveNotificationsListResponse
#   -> BF2B replacing the CHOICE's own [43]; inside, notificationList SEQUENCE OF (the CHOICE's
#   alternatives are all untagged -> automatic [0]) A0 0C <NOTIF> }:
#   91 + 3 + 14 = 108 (0x6C); BF50 content 110 (0x6E).
PROVIDE_EPR_AND_NOTIFICATIONS = "BF506E" "306C" + EPR + "BF2B0E" "A00C" + NOTIF
# eimPackageError INTEGER, untagged beside tagged siblings: universal 02; invalidPackageFormat 1.
PROVIDE_ERROR = "BF5003" "020101"

# HandleNotificationEsipa ::= [61] CHOICE { pendingNotification SGP32-PendingNotification,
# provideEimPackageResult ProvideEimPackageResult }: no written tags -> automatic [0] A0
# (explicit around the PendingNotification CHOICE) and [1] A1 replacing BF50.
HANDLE_NOTIFICATION = "BF3D0E" "A00C" + NOTIF
HANDLE_RESULT = "BF3D5D" "A15B" + EPR  # 2 + 91 = 93 (0x5D)

# IpaEuiccDataResponse ::= [82] CHOICE { ipaEuiccData IpaEuiccData, ipaEuiccDataError INTEGER }:
# no written tags -> A0 / 81. IpaEuiccData { defaultSmdpAddress [0] 80, ..., associationToken
# [4] 84, ..., notificationsList [43] BF2B }: 12 + 3 + 17 = 32 (0x20); A0 34 (0x22).
IPA_EUICC_DATA = ("BF5222" "A020" "800A" + DP + "840101" "BF2B0E" "A00C" + NOTIF)
# notificationsList with eUICC Package Results only: euiccPackageResultList automatic [2] A2.
IPA_EUICC_DATA_RESULTS = "BF5262" "A060" "BF2B5D" "A25B" + EPR  # 93 + 3 = 96 (0x60)
# both: notificationAndEprList [3] A3 SEQUENCE { notificationList [0] A0, euiccPackageResultList
# [1] A1 }: 14 + 93 = 107 (0x6B), A3 109, BF2B 112 (0x70), A0 114 (0x72).
IPA_EUICC_DATA_BOTH = ("BF5272" "A070" "BF2B6D" "A36B" "A00C" + NOTIF + "A15B" + EPR)
IPA_EUICC_DATA_ERROR = "BF5203" "810101"  # incorrectTagList (1)

# IpaEuiccDataRequest ::= [82] SEQUENCE { tagList [APPLICATION 28] 5C, euiccCiPKId (untagged,
# universal 04), searchCriteria [1] CHOICE { seqNumber [0], profileManagementOperation [1],
# euiccPackageResults [2] NULL } } - explicit CHOICE: A1 02 { 82 00 }. 5 + 4 = 9.
IPA_EUICC_DATA_REQUEST = "BF5209" "5C0380BF2B" "A1028200"
GET_EIM_PACKAGE_DATA_REQUEST = "BF4F0C" + IPA_EUICC_DATA_REQUEST

# GetEimPackageResponse eimPackageError: universal 02 (siblings tagged); v1.0 names
# noEimPackageAvailable (1) and undefinedError (127) only.
NO_PACKAGE = "BF4F03" "020101"
NO_PACKAGE_UNDEFINED = "BF4F03" "02017F"

# ProvideEimPackageResultResponse ::= [80] SEQUENCE { eimAcknowledgements [83] OPTIONAL }:
# nothing to acknowledge is the empty SEQUENCE; EimAcknowledgements SEQUENCE OF [0] INTEGER.
PROVIDE_RESPONSE_EMPTY = "BF5000"
PROVIDE_RESPONSE_ACK_7 = "BF5006" "BF5303" "800107"  # 3 + 3 = 6

# SGP32-EuiccMemoryResetRequest ::= [52] BF34 { resetOptions [2] BIT STRING {
# deleteOperationalProfiles(0), ..., resetEimConfigData(3), resetAutoEnableConfig(4) } }:
# bits 0 and 3 -> 1001 -> 4 unused bits: 82 02 04 90.
MEMORY_RESET = "BF3404" "82020490"
# SGP32-EuiccMemoryResetResponse: resetResult INTEGER untagged beside [1] / [2] -> 02;
# resetEimResult [1] 81.
MEMORY_RESET_OK = "BF3406" "020100" "810100"

# InitiateAuthenticationRequestEsipa ::= [57] { euiccChallenge [1] 81, smdpAddress [3] 83,
# euiccInfo1 } - no eimTransactionId in v1.0: 18 + 12 = 30 (0x1E).
INITIATE_AUTHENTICATION = "BF391E" "8110" + CHALLENGE + "830A" + DP

# EnableUsingDDRequest ::= [90] SEQUENCE {} (v1.2's ImmediateEnableRequest adds refreshFlag);
# EnableUsingDDResponse { enableUsingDDResult [0] 80 }: autoEnableNotAvailable (1).
ENABLE_USING_DD = "BF5A00"
ENABLE_USING_DD_NOT_AVAILABLE = "BF5A03" "800101"
