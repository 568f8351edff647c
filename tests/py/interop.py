"""Drive a running hookgate with callbacks built by independent implementations.

    interop.py config            print the hookgate config (TOML) these cases expect
    interop.py run BASE_URL      send every case; print one line per case; exit 1 on a failure

Callbacks are sealed by the vendors' SDKs on PyPI, not by hookgate's code: wechatpy
(`WeChatCrypto` for WeCom and the Official Account), dingtalk-sdk (`DingTalkCrypto`), and for
Feishu, where lark-oapi only opens callbacks, pycryptodome seals them and lark-oapi's own
`EventDispatcherHandler` is run on the same bytes as the reference receiver. Every reply is
checked against what the vendor expects: WeCom the bare echostr plaintext or an empty 200,
DingTalk an encrypted "success" map that dingtalk-sdk must open, Feishu the challenge JSON.

The last line of `run` is `expected-events <json>`: the (receiver, kind) of every event that
must be stored exactly once; the Rust test compares it with `hookgate events list`.
"""
import base64
import hashlib
import hmac
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import xmltodict
from Crypto.Cipher import AES

import dingtalk.crypto as dt
import wechatpy.crypto as wx_mp
import wechatpy.enterprise.crypto as wx_ent
from wechatpy.utils import WeChatSigner
from lark_oapi.core.model import RawRequest
from lark_oapi.event.dispatcher_handler import EventDispatcherHandler

WECOM = dict(token="QDG6eK", key="jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
             old_key="abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", corp="wx5823bf96d3bd56c7")
SUITE = dict(token="suiteTok", key="kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR",
             suite="ww4asffe99e54c0fxx")
MP = dict(token="weixin", key="abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
          appid="wxbad0b45542aa0b5e")
DING = dict(token="123456", key="4g5j64qlyl3zvetqxz5jiocdr586fn2zvjpa8zls3ij",
            old_key="1234567890123456789012345678901234567890123", owner="dingsnotzck6pm5veliw")
LARK = dict(token="vtoken_interop", encrypt_key="gwFeishuEncryptKey123")
ROBOT = dict(secret="SECxxxxinteropxxxxrobotsecret")

CONFIG = f"""
[server]
listen = "127.0.0.1:0"

[store]
path = "${{HOOKGATE_DB}}"

[[receivers]]
name = "hr"
vendor = "wecom"
path = "/wecom"
token = "{WECOM['token']}"
encoding_aes_key = "{WECOM['key']}"
previous_encoding_aes_key = "{WECOM['old_key']}"
receive_id = "{WECOM['corp']}"

[[receivers]]
name = "suite"
vendor = "wecom"
path = "/wecom-suite"
token = "{SUITE['token']}"
encoding_aes_key = "{SUITE['key']}"
receive_id = "{SUITE['suite']}"
suite = true

[[receivers]]
name = "mp"
vendor = "wechat_mp"
path = "/mp"
token = "{MP['token']}"
encoding_aes_key = "{MP['key']}"
receive_id = "{MP['appid']}"

[[receivers]]
name = "ding"
vendor = "dingtalk"
path = "/ding"
token = "{DING['token']}"
encoding_aes_key = "{DING['key']}"
previous_encoding_aes_key = "{DING['old_key']}"
receive_id = "{DING['owner']}"

[[receivers]]
name = "lark"
vendor = "feishu"
path = "/lark"
verification_token = "{LARK['token']}"
encrypt_key = "{LARK['encrypt_key']}"

[[receivers]]
name = "robot"
vendor = "dingtalk_robot"
path = "/robot"
app_secret = "{ROBOT['secret']}"
"""

BASE = ""
FAILURES = []
EXPECTED = []


def http(method, path, query=None, body=None, headers=None):
    url = BASE + path + ("?" + urllib.parse.urlencode(query) if query else "")
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def case(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + detail), flush=True)
    if not ok:
        FAILURES.append(name)


def expect(name, got, want):
    case(name, got == want, f"got {got!r}, want {want!r}")


def now():
    return str(int(time.time()))


def nonce():
    return base64.b32encode(os.urandom(5)).decode().lower()


# --- WeCom (wechatpy.enterprise.WeChatCrypto) ---------------------------------------------

def wecom_seal(conf, key, msg, receive_id=None, ts=None):
    c = wx_ent.WeChatCrypto(conf["token"], key, receive_id if receive_id is not None else conf.get("corp", conf.get("suite")))
    n = nonce()
    out = xmltodict.parse(c.encrypt_message(msg, n, ts or now()))["xml"]
    return out["Encrypt"], {"msg_signature": out["MsgSignature"], "timestamp": out["TimeStamp"], "nonce": out["Nonce"]}


def wecom_post(path, conf, key, msg, **kw):
    enc, q = wecom_seal(conf, key, msg, **kw)
    body = f"<xml><ToUserName><![CDATA[{conf.get('corp', '')}]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt><AgentID><![CDATA[1000002]]></AgentID></xml>"
    return http("POST", path, q, body.encode(), {"Content-Type": "text/xml"})


def wecom():
    # URL check: echostr is sealed like a message; the reply is the bare plaintext.
    echo = str(int.from_bytes(os.urandom(8), "big"))
    enc, q = wecom_seal(WECOM, WECOM["key"], echo)
    q["echostr"] = enc
    expect("wecom url check replies the bare echostr", http("GET", "/wecom", q), (200, echo.encode()))

    msg = ("<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName><FromUserName><![CDATA[zhangsan]]></FromUserName>"
           f"<CreateTime>{now()}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[你好 interop]]></Content>"
           "<MsgId>7340567890123456789</MsgId><AgentID>1000002</AgentID></xml>")
    for i in range(3):
        expect(f"wecom text message, delivery {i + 1} of 3: 200 empty", wecom_post("/wecom", WECOM, WECOM["key"], msg), (200, b""))
    EXPECTED.append(("hr", "text"))

    ts = now()
    for user in ("lisi", "wangwu"):
        ev = (f"<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
              f"<CreateTime>{ts}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_contact]]></Event>"
              f"<ChangeType>create_user</ChangeType><UserID><![CDATA[{user}]]></UserID><Department><![CDATA[1,2]]></Department></xml>")
        expect(f"wecom change_contact create_user {user}", wecom_post("/wecom", WECOM, WECOM["key"], ev), (200, b""))
        EXPECTED.append(("hr", "change_contact/create_user"))

    old = msg.replace("7340567890123456789", "7340567890123456790")
    expect("wecom event sealed with the previous key", wecom_post("/wecom", WECOM, WECOM["old_key"], old), (200, b""))
    EXPECTED.append(("hr", "text"))

    bad = msg.replace("7340567890123456789", "1")
    enc, q = wecom_seal(WECOM, WECOM["key"], bad)
    q["msg_signature"] = q["msg_signature"][:-1] + ("0" if q["msg_signature"][-1] != "0" else "1")
    body = f"<xml><Encrypt><![CDATA[{enc}]]></Encrypt></xml>".encode()
    expect("wecom tampered msg_signature is 403", http("POST", "/wecom", q, body)[0], 403)
    expect("wecom wrong CorpID is 403", wecom_post("/wecom", WECOM, WECOM["key"], bad, receive_id="wwotherCorp")[0], 403)
    expect("wecom timestamp an hour old is 403",
           wecom_post("/wecom", WECOM, WECOM["key"], bad, ts=str(int(time.time()) - 3600))[0], 403)
    other = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
    # Signed with the right token but sealed with a key we do not hold: -40007, a 400.
    status = wecom_post("/wecom", WECOM, other, bad)[0]
    case("wecom sealed with an unknown key is refused", status in (400, 403), f"got {status}")

    # A third-party suite's command callback is answered "success".
    cmd = (f"<xml><SuiteId><![CDATA[{SUITE['suite']}]]></SuiteId><InfoType><![CDATA[suite_ticket]]></InfoType>"
           f"<TimeStamp>{now()}</TimeStamp><SuiteTicket><![CDATA[asdfasfdasdfasdf]]></SuiteTicket></xml>")
    expect("wecom suite_ticket replies success", wecom_post("/wecom-suite", SUITE, SUITE["key"], cmd), (200, b"success"))
    EXPECTED.append(("suite", "suite_ticket"))


# --- WeChat Official Account (wechatpy.crypto.WeChatCrypto, WeChatSigner) -----------------

def mp_signature(ts, n):
    s = WeChatSigner()
    s.add_data(MP["token"], ts, n)
    return s.signature


def mp():
    ts, n = now(), nonce()
    echo = "4907390238927651234"
    q = {"signature": mp_signature(ts, n), "echostr": echo, "timestamp": ts, "nonce": n}
    expect("wechat_mp url check replies echostr", http("GET", "/mp", q), (200, echo.encode()))

    msg = ("<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName>"
           f"<CreateTime>{now()}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event>"
           "<EventKey><![CDATA[]]></EventKey></xml>")
    c = wx_mp.WeChatCrypto(MP["token"], MP["key"], MP["appid"])
    ts, n = now(), nonce()
    out = xmltodict.parse(c.encrypt_message(msg, n, ts))["xml"]
    body = f"<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><Encrypt><![CDATA[{out['Encrypt']}]]></Encrypt></xml>"
    q = {"signature": mp_signature(ts, n), "timestamp": ts, "nonce": n, "openid": "oyORnuP8q7ou2gfYjqLzSIWZf0rs",
         "encrypt_type": "aes", "msg_signature": out["MsgSignature"]}
    for i in range(3):
        expect(f"wechat_mp safe-mode subscribe, delivery {i + 1} of 3: success", http("POST", "/mp", q, body.encode()), (200, b"success"))
    EXPECTED.append(("mp", "subscribe"))

    plain = {k: v for k, v in q.items() if k not in ("encrypt_type", "msg_signature")}
    expect("wechat_mp plaintext refused in safe mode", http("POST", "/mp", plain, msg.encode())[0], 403)


# --- DingTalk (dingtalk.crypto.DingTalkCrypto) --------------------------------------------

def ding_post(msg, key=None, spelling=("signature", "timestamp")):
    c = dt.DingTalkCrypto(DING["token"], key or DING["key"], DING["owner"])
    sealed = c.encrypt_message(msg, nonce(), str(int(time.time() * 1000)))
    q = {spelling[0]: sealed["msg_signature"], spelling[1]: sealed["timeStamp"], "nonce": sealed["nonce"]}
    return http("POST", "/ding", q, json.dumps({"encrypt": sealed["encrypt"]}).encode(), {"Content-Type": "application/json"})


def ding_success(name, reply, key=None):
    status, body = reply
    if status != 200:
        return case(name, False, f"status {status}: {body[:200]!r}")
    try:
        m = json.loads(body)
        keys = sorted(m)
        c = dt.DingTalkCrypto(DING["token"], key or DING["key"], DING["owner"])
        plain = c.decrypt_message(m, m["msg_signature"], m["timeStamp"], m["nonce"])
    except Exception as e:  # noqa: BLE001 - any failure of the SDK to open the reply is the finding
        return case(name, False, f"dingtalk-sdk cannot open the reply {body[:200]!r}: {type(e).__name__} {e}")
    expect(name, (keys, plain), (["encrypt", "msg_signature", "nonce", "timeStamp"], "success"))


def ding():
    ding_success("dingtalk check_url answered with the encrypted success map", ding_post('{"EventType":"check_url"}'))
    ev = json.dumps({"EventType": "user_add_org", "TimeStamp": str(int(time.time() * 1000)), "UserId": ["manager7675"],
                     "CorpId": "dingc7a2e8b1f3d2b6f935c2f4657eb6378f", "eventId": "9c2e6a7f3b8d4e1aa0c5f6e7d8b9a0c1"})
    for i in range(3):
        ding_success(f"dingtalk user_add_org, delivery {i + 1} of 3", ding_post(ev))
    EXPECTED.append(("ding", "user_add_org"))

    ev2 = json.dumps({"EventType": "user_leave_org", "TimeStamp": str(int(time.time() * 1000)), "UserId": ["lisi"],
                      "CorpId": "dingc7a2e8b1f3d2b6f935c2f4657eb6378f"})
    ding_success("dingtalk msg_signature/timeStamp spelling", ding_post(ev2, spelling=("msg_signature", "timeStamp")))
    EXPECTED.append(("ding", "user_leave_org"))

    ev3 = ev2.replace("lisi", "wangwu")
    ding_success("dingtalk sealed with the previous key gets a reply sealed with it",
                 ding_post(ev3, key=DING["old_key"]), key=DING["old_key"])
    EXPECTED.append(("ding", "user_leave_org"))

    c = dt.DingTalkCrypto(DING["token"], DING["key"], DING["owner"])
    sealed = c.encrypt_message(ev2, nonce(), str(int(time.time() * 1000)))
    q = {"signature": "0" * 40, "timestamp": sealed["timeStamp"], "nonce": sealed["nonce"]}
    expect("dingtalk tampered signature is 403",
           http("POST", "/ding", q, json.dumps({"encrypt": sealed["encrypt"]}).encode())[0], 403)
    other = dt.DingTalkCrypto(DING["token"], DING["key"], "dingotherowner")
    sealed = other.encrypt_message(ev2, nonce(), str(int(time.time() * 1000)))
    q = {"signature": sealed["msg_signature"], "timestamp": sealed["timeStamp"], "nonce": sealed["nonce"]}
    expect("dingtalk wrong owner key is 403",
           http("POST", "/ding", q, json.dumps({"encrypt": sealed["encrypt"]}).encode())[0], 403)


# --- Feishu (pycryptodome seals; lark-oapi EventDispatcherHandler is the reference) -------

def lark_seal(plaintext):
    key = hashlib.sha256(LARK["encrypt_key"].encode()).digest()
    iv = os.urandom(16)
    data = plaintext.encode()
    pad = 16 - len(data) % 16
    ct = AES.new(key, AES.MODE_CBC, iv).encrypt(data + bytes([pad]) * pad)
    return json.dumps({"encrypt": base64.b64encode(iv + ct).decode()}).encode()


def lark_headers(body, tamper=False):
    ts, n = now(), nonce()
    sig = hashlib.sha256((ts + n + LARK["encrypt_key"]).encode() + body).hexdigest()
    if tamper:
        sig = sig[::-1]
    return {"X-Lark-Request-Timestamp": ts, "X-Lark-Request-Nonce": n, "X-Lark-Signature": sig,
            "Content-Type": "application/json; charset=utf-8"}


def lark_reference(body, headers):
    """What lark-oapi's own handler answers to the same bytes (200 or 500, body)."""
    h = EventDispatcherHandler.builder(LARK["encrypt_key"], LARK["token"]) \
        .register_p2_customized_event("im.chat.member.user.added_v1", lambda _: None) \
        .register_p1_customized_event("add_user_to_chat", lambda _: None).build()
    req = RawRequest()
    req.uri = "/lark"
    req.headers = headers
    req.body = body
    resp = h.do(req)
    return resp.status_code, resp.content


def lark_case(name, body, headers, want_status):
    ref_status, ref_body = lark_reference(body, headers)
    status, got = http("POST", "/lark", None, body, headers)
    agree = (ref_status == 200) == (status == 200)
    same = ref_status != 200 or json.loads(got) == json.loads(ref_body)
    case(name, status == want_status and agree and same,
         f"hookgate {status} {got[:200]!r}, lark-oapi {ref_status} {ref_body[:200]!r}, want {want_status}")


def lark():
    chal = "ajls384kdjx98XX" + nonce()
    body = lark_seal(json.dumps({"challenge": chal, "token": LARK["token"], "type": "url_verification"}))
    lark_case("feishu encrypted url_verification answers the challenge like lark-oapi", body, lark_headers(body), 200)
    status, got = http("POST", "/lark", None, body, lark_headers(body))
    expect("feishu challenge reply is exactly {challenge}", (status, json.loads(got)), (200, {"challenge": chal}))

    bad = lark_seal(json.dumps({"challenge": chal, "token": "wrong", "type": "url_verification"}))
    lark_case("feishu url_verification with a wrong token is refused like lark-oapi", bad, lark_headers(bad), 403)

    v2 = json.dumps({"schema": "2.0", "header": {"event_id": "5e3702a84e847582be8db7fb73283c02" + nonce(),
                                                 "event_type": "im.chat.member.user.added_v1", "create_time": now() + "000",
                                                 "token": LARK["token"], "app_id": "cli_9f5343c580712004", "tenant_key": "2ca1d211f64f6438"},
                     "event": {"chat_id": "oc_413871d4ee4d5b7e8d3f2f4c1e9b5a7c", "users": [{"name": "张三", "user_id": {"open_id": "ou_bbb"}}]}},
                    ensure_ascii=False)
    body = lark_seal(v2)
    for i in range(3):
        lark_case(f"feishu v2 event, delivery {i + 1} of 3", body, lark_headers(body), 200)
    EXPECTED.append(("lark", "im.chat.member.user.added_v1"))

    v1 = json.dumps({"uuid": "bfad5c5a4e3fdc2ae3fc5b2f6c3d1e0a" + nonce(), "token": LARK["token"], "ts": now() + ".123456",
                     "type": "event_callback", "event": {"type": "add_user_to_chat", "app_id": "cli_9f5343c580712004",
                                                         "chat_id": "oc_413871d4ee4d5b7e8d3f2f4c1e9b5a7c"}})
    body = lark_seal(v1)
    lark_case("feishu v1 event", body, lark_headers(body), 200)
    EXPECTED.append(("lark", "add_user_to_chat"))

    body = lark_seal(v2.replace("5e37", "6e37"))
    lark_case("feishu tampered X-Lark-Signature is refused like lark-oapi", body, lark_headers(body, tamper=True), 403)


# --- DingTalk outgoing robot (stdlib hmac, the documented Java/Python recipe) -------------

def robot_post(body, tamper=False):
    ts = str(int(time.time() * 1000))
    mac = hmac.new(ROBOT["secret"].encode(), f"{ts}\n{ROBOT['secret']}".encode(), hashlib.sha256).digest()
    sign = base64.b64encode(mac).decode()
    if tamper:
        sign = sign[::-1]
    return http("POST", "/robot", None, body, {"timestamp": ts, "sign": sign, "Content-Type": "application/json"})


def robot():
    msg = json.dumps({"conversationId": "cidYeWOL5ZL4rMQvAaGqZyrmA==", "chatbotUserId": "$:LWCP_v1:$abc",
                      "msgId": "msgjVJQ9SqJE8SLTSaKzRHp9g==", "senderNick": "张三", "isAdmin": False,
                      "sessionWebhook": "https://oapi.dingtalk.com/robot/sendBySession?session=x",
                      "createAt": int(time.time() * 1000), "conversationType": "2", "msgtype": "text",
                      "text": {"content": " 你好"}}, ensure_ascii=False).encode()
    for i in range(3):
        expect(f"dingtalk robot text, delivery {i + 1} of 3", robot_post(msg)[0], 200)
    EXPECTED.append(("robot", "text"))
    expect("dingtalk robot tampered sign is 403", robot_post(msg, tamper=True)[0], 403)


def main():
    global BASE
    # lark-oapi logs a traceback for every request it refuses; the refusals here are expected.
    logging.getLogger("Lark").setLevel(logging.CRITICAL)
    if sys.argv[1:] == ["config"]:
        print(CONFIG)
        return 0
    if len(sys.argv) != 3 or sys.argv[1] != "run":
        print(__doc__, file=sys.stderr)
        return 2
    BASE = sys.argv[2].rstrip("/")
    for part in (wecom, mp, ding, lark, robot):
        part()
    expect("server still answers a bare GET with a hint", http("GET", "/wecom")[0], 200)
    print("expected-events " + json.dumps(sorted(EXPECTED)))
    print(f"{len(FAILURES)} failed", flush=True)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
