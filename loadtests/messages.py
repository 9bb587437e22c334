"""Request payloads: SOAP 1.1 envelopes and JSON documents of a chosen size.

Generated, not read from fixed files, like WSO2's own performance suite (1 KB, 10 KB, 100 KB).
"""

from __future__ import annotations

import json
from functools import lru_cache

SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SIZES = {"1KB": 1024, "10KB": 10 * 1024, "100KB": 100 * 1024}

_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    f'<soapenv:Envelope xmlns:soapenv="{SOAP11_NS}" xmlns:ser="http://services.samples">'
    "<soapenv:Header/><soapenv:Body><ser:getQuote>"
)
_TAIL = "</ser:getQuote></soapenv:Body></soapenv:Envelope>"


def parse_size(text: str | int) -> int:
    """'1KB' / '10KB' / '100KB' / a byte count -> bytes."""
    if isinstance(text, int):
        return text
    key = text.strip().upper()
    if key in SIZES:
        return SIZES[key]
    if key.endswith("KB") and key[:-2].isdigit():
        return int(key[:-2]) * 1024
    if key.isdigit():
        return int(key)
    raise ValueError(f"message size {text!r}: use 1KB, 10KB, 100KB or a byte count")


@lru_cache(maxsize=32)
def soap_envelope(size: int = 1024) -> bytes:
    """A SOAP 1.1 getQuote envelope padded with <ser:item> elements to about `size` bytes."""
    body = []
    length = len(_HEAD) + len(_TAIL)
    i = 0
    while True:
        item = f"<ser:item id=\"{i}\"><ser:symbol>WSO2</ser:symbol><ser:qty>{i % 97}</ser:qty></ser:item>"
        if length + len(item) > size and i > 0:
            break
        body.append(item)
        length += len(item)
        i += 1
    return (_HEAD + "".join(body) + _TAIL).encode()


@lru_cache(maxsize=32)
def json_document(size: int = 1024) -> bytes:
    """A JSON order document with items, about `size` bytes."""
    items = []
    length = 40
    i = 0
    while True:
        item = {"id": i, "symbol": "WSO2", "qty": i % 97, "price": round(10 + i * 0.25, 2)}
        n = len(json.dumps(item)) + 2
        if length + n > size and i > 0:
            break
        items.append(item)
        length += n
        i += 1
    return json.dumps({"order": {"customer": "eiperf", "items": items}}).encode()
