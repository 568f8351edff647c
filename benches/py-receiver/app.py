"""The receiver most users write by hand, for the load bench: a WSGI app on wechatpy's
WeCom crypto (verify, decrypt, parse the XML, reply 200 empty), run under gunicorn with one
worker process per core. No dedupe, no storage.

    HG_TOKEN=… HG_KEY=… HG_CORP=… gunicorn -w 2 -k gthread --threads 8 app:app
"""
import os
from urllib.parse import parse_qs

import xmltodict
from wechatpy.enterprise.crypto import WeChatCrypto

CRYPTO = WeChatCrypto(os.environ["HG_TOKEN"], os.environ["HG_KEY"], os.environ["HG_CORP"])


def app(environ, start_response):
    q = parse_qs(environ.get("QUERY_STRING", ""))
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    try:
        msg = CRYPTO.decrypt_message(body, q["msg_signature"][0], q["timestamp"][0], q["nonce"][0])
        xmltodict.parse(msg)
    except Exception:  # noqa: BLE001 - any failure is a refusal
        start_response("403 Forbidden", [("Content-Length", "0")])
        return [b""]
    start_response("200 OK", [("Content-Length", "0")])
    return [b""]
