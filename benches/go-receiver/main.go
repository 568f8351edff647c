// The receiver users write by hand, for the load bench to compare hookgate with: Go stdlib
// net/http + crypto/aes in the style of the official weworkapi_golang sample. Verifies the
// msg_signature, decrypts, checks PKCS#7 and the receive id, parses the message XML, and
// answers 200 with an empty body. No dedupe, no storage.
//
//	go run main.go -listen 127.0.0.1:0 -token T -key EncodingAESKey -receive-id CorpID
package main

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
)

type envelope struct {
	Encrypt string `xml:"Encrypt"`
}

type message struct {
	ToUserName   string `xml:"ToUserName"`
	FromUserName string `xml:"FromUserName"`
	CreateTime   int64  `xml:"CreateTime"`
	MsgType      string `xml:"MsgType"`
	Content      string `xml:"Content"`
	MsgId        string `xml:"MsgId"`
	AgentID      int64  `xml:"AgentID"`
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address")
	token := flag.String("token", "", "Token")
	encodingKey := flag.String("key", "", "EncodingAESKey")
	receiveID := flag.String("receive-id", "", "CorpID")
	flag.Parse()
	key, err := base64.StdEncoding.DecodeString(*encodingKey + "=")
	if err != nil || len(key) != 32 {
		log.Fatalf("bad EncodingAESKey: %v", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		log.Fatal(err)
	}

	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read", 400)
			return
		}
		var env envelope
		if err := xml.Unmarshal(body, &env); err != nil {
			http.Error(w, "xml", 400)
			return
		}
		parts := []string{*token, q.Get("timestamp"), q.Get("nonce"), env.Encrypt}
		sort.Strings(parts)
		sum := sha1.Sum([]byte(strings.Join(parts, "")))
		want := hex.EncodeToString(sum[:])
		if subtle.ConstantTimeCompare([]byte(want), []byte(q.Get("msg_signature"))) != 1 {
			http.Error(w, "-40001", 403)
			return
		}
		ct, err := base64.StdEncoding.DecodeString(env.Encrypt)
		if err != nil || len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
			http.Error(w, "-40010", 400)
			return
		}
		plain := make([]byte, len(ct))
		cipher.NewCBCDecrypter(block, key[:16]).CryptBlocks(plain, ct)
		pad := int(plain[len(plain)-1])
		if pad < 1 || pad > 32 || pad > len(plain) {
			http.Error(w, "-40007", 400)
			return
		}
		plain = plain[:len(plain)-pad]
		if len(plain) < 20 {
			http.Error(w, "-40007", 400)
			return
		}
		n := int(binary.BigEndian.Uint32(plain[16:20]))
		if 20+n > len(plain) {
			http.Error(w, "-40007", 400)
			return
		}
		if !bytes.Equal(plain[20+n:], []byte(*receiveID)) {
			http.Error(w, "-40005", 403)
			return
		}
		var msg message
		if err := xml.Unmarshal(plain[20:20+n], &msg); err != nil {
			http.Error(w, "xml", 400)
			return
		}
		w.WriteHeader(200)
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "go receiver listening. addr=%s\n", ln.Addr())
	log.Fatal(http.Serve(ln, nil))
}
