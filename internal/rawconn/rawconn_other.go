//go:build !linux

package rawconn

const supported = false

// rawConn is never set where the calls are not made raw: Wrap returns the connection itself.
type rawConn = any

type op struct{}

func (c *Conn) bind() {}

func (c *Conn) Read(p []byte) (int, error)  { return c.tcp.Read(p) }
func (c *Conn) Write(p []byte) (int, error) { return c.tcp.Write(p) }
