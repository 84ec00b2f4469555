"""NTLM (MS-NLMP), sans-I/O: message codecs, the NTLMv2 acceptor and session security.

Shared by the server's SMB logons, DCE/RPC authentication and (later) the client.
Bytes in, bytes out; no sockets, no clocks unless the caller leaves them to us.

* ``crypto``: MD4, ``nt_hash`` (NTOWFv1, the one NT hash of this project), RC4, NTOWFv2.
* ``messages``: flags, AV pairs, NEGOTIATE / CHALLENGE / AUTHENTICATE codecs, ``NtlmError``,
  and the client's anonymous NEGOTIATE / AUTHENTICATE (``ntlm_anonymous_*``).
* ``acceptor``: ``NtlmAcceptor``, NEGOTIATE -> CHALLENGE, AUTHENTICATE -> verified
  ``NtlmIdentity``. NTLMv2 only; NTLMv1/LM responses are refused like a wrong password.
* ``security``: ``NtlmSessionSecurity``, MS-NLMP 3.4 signing and sealing with extended
  session security (what DCE/RPC packet integrity/privacy uses).

The public names of all four are importable from ``smbsessions.ntlm``.
"""

from .acceptor import NtlmAcceptor, NtlmIdentity
from .crypto import Rc4, filetime_now, md4, nt_hash, ntowfv2, rc4k
from .messages import (
    MAX_TOKEN_SIZE,
    MSV_AV_FLAG_MIC_PRESENT,
    SERVER_VERSION,
    SIGNATURE,
    AuthenticateMessage,
    AvId,
    ChallengeMessage,
    MessageType,
    NegotiateFlags,
    NegotiateMessage,
    NtlmError,
    build_authenticate,
    build_challenge,
    build_negotiate,
    decode_av_pairs,
    encode_av_pairs,
    message_type,
    ntlm_anonymous_authenticate,
    ntlm_anonymous_negotiate,
    parse_authenticate,
    parse_challenge,
    parse_negotiate,
)
from .security import NtlmSessionSecurity, seal_key, sign_key

__all__ = [
    "MAX_TOKEN_SIZE",
    "MSV_AV_FLAG_MIC_PRESENT",
    "SERVER_VERSION",
    "SIGNATURE",
    "AuthenticateMessage",
    "AvId",
    "ChallengeMessage",
    "MessageType",
    "NegotiateFlags",
    "NegotiateMessage",
    "NtlmAcceptor",
    "NtlmError",
    "NtlmIdentity",
    "NtlmSessionSecurity",
    "Rc4",
    "build_authenticate",
    "build_challenge",
    "build_negotiate",
    "decode_av_pairs",
    "encode_av_pairs",
    "filetime_now",
    "md4",
    "message_type",
    "nt_hash",
    "ntlm_anonymous_authenticate",
    "ntlm_anonymous_negotiate",
    "ntowfv2",
    "parse_authenticate",
    "parse_challenge",
    "parse_negotiate",
    "rc4k",
    "seal_key",
    "sign_key",
]
