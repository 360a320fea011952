"""X.509 certificates as zero reads them: serial number and validity dates, from a small
hand-written DER reader (`cryptography` is not a runtime dependency), and the date check
every TLS user applies at start.

Certificate dates. `load_tls` refuses a certificate that is expired or not yet valid,
with one line naming the file and its notBefore/notAfter dates (`zero run` exits 1 with
it, `zero datanode` and `zero admin` refuse it alike): every certificate in node.crt
must be valid now; ca.crt needs at least one valid certificate (a bundle holding an old
and a new CA during a CA change may keep the expired old one).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
from dataclasses import dataclass

from zero.errors import ZeroError

__all__ = ["TlsError", "CertInfo", "cert_infos", "check_dates", "format_utc"]


class TlsError(ZeroError):
    """The TLS directory is unusable; the message names the file and why."""

    code = "FAILED_PRECONDITION"


_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)


def format_utc(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True, slots=True)
class CertInfo:
    """What zero reads of one certificate: enough for the date check and the logs."""

    file: str
    index: int  # 0: the first certificate of the file (node.crt's own); chains go on from there
    serial: int
    not_before: datetime.datetime  # timezone-aware, UTC
    not_after: datetime.datetime

    def valid_at(self, now: datetime.datetime) -> bool:
        return self.not_before <= now <= self.not_after

    def dates(self) -> str:
        return f"valid from {format_utc(self.not_before)} until {format_utc(self.not_after)}"

    def where(self, count: int) -> str:
        return self.file if count == 1 else f"certificate {self.index + 1} of {count} in {self.file}"

    def problem(self, now: datetime.datetime, count: int = 1) -> str | None:
        """None when valid at `now`; else one line naming the file and both dates."""
        if now > self.not_after:
            return f"{self.where(count)} has expired: {self.dates()}; it is now {format_utc(now)}"
        if now < self.not_before:
            return (f"{self.where(count)} is not valid yet: {self.dates()}; it is now {format_utc(now)} "
                    "(check this machine's clock, or the certificate's dates)")
        return None


def _der(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, start, stop) of the DER element at `pos`: its contents are buf[start:stop]."""
    if pos + 2 > end:
        raise ValueError("truncated DER")
    tag, length = buf[pos], buf[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if not 1 <= n <= 4 or pos + n > end:
            raise ValueError("bad DER length")
        length = int.from_bytes(buf[pos:pos + n], "big")
        pos += n
    if pos + length > end:
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _der_time(tag: int, raw: bytes) -> datetime.datetime:
    text = raw.decode("ascii")
    if tag == 0x17:  # UTCTime, YYMMDDHHMMSSZ; RFC 5280: YY >= 50 is 19YY
        t = datetime.datetime.strptime(text, "%y%m%d%H%M%SZ")
        if t.year >= 2050:
            t = t.replace(year=t.year - 100)
    elif tag == 0x18:  # GeneralizedTime, YYYYMMDDHHMMSSZ
        t = datetime.datetime.strptime(text, "%Y%m%d%H%M%SZ")
    else:
        raise ValueError(f"validity time with DER tag {tag:#x}")
    return t.replace(tzinfo=datetime.timezone.utc)


def _cert_info(der: bytes, file: str, index: int) -> CertInfo:
    """serialNumber and validity of one X.509 certificate (RFC 5280 4.1)."""
    tag, start, stop = _der(der, 0, len(der))  # Certificate
    if tag != 0x30:
        raise ValueError("not a certificate")
    tag, pos, tbs_end = _der(der, start, stop)  # TBSCertificate
    if tag != 0x30:
        raise ValueError("not a certificate")
    tag, s, e = _der(der, pos, tbs_end)
    if tag == 0xA0:  # [0] version
        tag, s, e = _der(der, e, tbs_end)
    if tag != 0x02:
        raise ValueError("no serial number")
    serial = int.from_bytes(der[s:e], "big", signed=True)
    for _ in range(2):  # signature AlgorithmIdentifier, issuer Name
        tag, s, e = _der(der, e, tbs_end)
        if tag != 0x30:
            raise ValueError("malformed certificate")
    tag, vs, ve = _der(der, e, tbs_end)  # Validity
    if tag != 0x30:
        raise ValueError("no validity")
    t1, s1, e1 = _der(der, vs, ve)
    t2, s2, e2 = _der(der, e1, ve)
    return CertInfo(file=file, index=index, serial=serial, not_before=_der_time(t1, der[s1:e1]),
                    not_after=_der_time(t2, der[s2:e2]))


def cert_infos(pem: bytes, file: str) -> list[CertInfo]:
    """Every certificate of a PEM file, in order; TlsError names the file when one cannot
    be read."""
    out = []
    for i, m in enumerate(_PEM_CERT.finditer(pem)):
        try:
            der = base64.b64decode(b"".join(m.group(1).split()), validate=True)
            out.append(_cert_info(der, file, i))
        except (ValueError, binascii.Error, UnicodeDecodeError) as e:
            raise TlsError(f"{file}: certificate {i + 1} is not a readable X.509 certificate ({e})") from None
    if not out:
        raise TlsError(f"{file} holds no certificate")
    return out


def check_dates(ca: list[CertInfo], chain: list[CertInfo], now: datetime.datetime | None = None) -> None:
    """TlsError when a certificate of node.crt is expired or not yet valid, or no
    certificate of ca.crt is valid (see the module's docstring)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    for c in chain:
        problem = c.problem(now, len(chain))
        if problem:
            raise TlsError(problem)
    if ca and not any(c.valid_at(now) for c in ca):
        raise TlsError("; ".join(p for c in ca if (p := c.problem(now, len(ca)))))
