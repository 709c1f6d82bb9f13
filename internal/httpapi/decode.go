package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	streamgate "github.com/streamgate/streamgate"
)

// Body limits per route kind. Publishing allows the largest max_message_bytes a tenant can have
// plus room for the envelope; a batch allows many events but far less than any JSON bomb.
const (
	smallBodyLimit   = 64 << 10
	publishBodyLimit = 1<<20 + 16<<10
	batchBodyLimit   = 4 << 20
)

// decodeJSON reads a JSON object from the request into v, strictly: application/json only,
// at most limit bytes, no unknown fields, nothing after the object. An empty body is an error
// unless allowEmpty.
func decodeJSON(r *http.Request, limit int64, v any, allowEmpty bool) *Error {
	if r.ContentLength > limit {
		return errorf(http.StatusRequestEntityTooLarge, CodeTooLarge, "The request body is over this route's limit of %d bytes", limit)
	}
	body, err := readBody(r, limit+1)
	if bodyTimedOut(err) {
		return errorf(http.StatusRequestTimeout, CodeInvalid, messageBodyTimeout)
	}
	if err != nil {
		return errorf(http.StatusBadRequest, CodeInvalid, "The request body could not be read")
	}
	if int64(len(body)) > limit {
		return errorf(http.StatusRequestEntityTooLarge, CodeTooLarge, "The request body is over this route's limit of %d bytes", limit)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if allowEmpty {
			return nil
		}
		return errorf(http.StatusBadRequest, CodeInvalid, "The request needs a JSON body")
	}
	if ct := r.Header.Get("Content-Type"); !isJSON(ct) {
		return errorf(http.StatusUnsupportedMediaType, CodeMediaType, "Send the body as Content-Type: application/json")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, CodeInvalid, "%s", jsonProblem(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errorf(http.StatusBadRequest, CodeInvalid, "The body must hold exactly one JSON object")
	}
	return nil
}

// readBody reads at most n bytes of r's body: in one allocation where it knows the length, which
// is the common case (Content-Length).
func readBody(r *http.Request, n int64) ([]byte, error) {
	size := int64(512)
	if r.ContentLength >= 0 {
		size = r.ContentLength + 1 // one more, to see the end without growing
	}
	b := make([]byte, 0, min(size, n))
	for int64(len(b)) < n {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // grow
		}
		m, err := r.Body.Read(b[len(b):min(int64(cap(b)), n)])
		b = b[:len(b)+m]
		if errors.Is(err, io.EOF) {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
	return b, nil
}

// messageIDSyntax is the refusal of an id that breaks the names rules.
const messageIDSyntax = "Ids and step names are 1 to 128 characters of A-Z a-z 0-9 _ - . :"

// pathIDs refuses a path whose ids (a key, tenant, session, job or workflow id, a step name)
// break the names rules: an id that cannot exist is neither looked up nor echoed in a message.
func pathIDs(c *gin.Context) *Error {
	for _, p := range c.Params {
		if (p.Key == "id" || p.Key == "name") && !streamgate.ValidID(p.Value) {
			return errorf(http.StatusBadRequest, CodeInvalid, messageIDSyntax)
		}
	}
	return nil
}

func isJSON(ct string) bool {
	if ct == "application/json" {
		return true // what nearly every client sends, without parsing
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// jsonProblem describes a decoding error without echoing request data beyond a field name.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case strings.Contains(err.Error(), "exceeded max depth"):
		return "The body is nested too deeply"
	case errors.As(err, &syn):
		return fmt.Sprintf("The body is not valid JSON (at byte %d)", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("Field %q must be %s", typ.Field, jsonKind(typ.Type.Kind().String()))
		}
		return "The body must be a JSON object"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "The body is not valid JSON (it ends too early)"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "Unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	default:
		return "The body is not valid JSON"
	}
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "int", "int64", "int32", "float64":
		return "a number"
	case "bool":
		return "true or false"
	case "slice":
		return "an array"
	case "struct", "map":
		return "an object"
	default:
		return "of another type"
	}
}
