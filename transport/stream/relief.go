package stream

// BeginInline implements transport.Reliever: it is true when called from
// HandleFrame on Serve's goroutine, holding the read turn, with nothing
// more buffered (no frame waits behind this one), in a process with more
// than one P.
func (c *Conn) BeginInline() bool {
	if c.oneP {
		return false
	}
	c.rmu.Lock()
	ok := c.turn == turnServe && !c.inlining && c.br != nil && c.br.Buffered() == 0
	c.inlining = ok
	c.rmu.Unlock()
	return ok
}

// EndInline implements transport.Reliever.
func (c *Conn) EndInline() {
	c.rmu.Lock()
	c.inlining = false
	c.rmu.Unlock()
}

// Relieve implements transport.Reliever: while Serve's goroutine is in the
// work BeginInline allowed, a relief goroutine takes the read turn and
// reads as Serve does, requests included. It gives the turn back after the
// first frame it handles once Serve's goroutine is free again (Serve waits
// until then: the connection is read meanwhile), or when the connection
// breaks; then it ends the connection itself (Closed), since the work on
// Serve's goroutine may be waiting for exactly that, its ctx's end.
func (c *Conn) Relieve() {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if !c.inlining || c.turn != turnServe {
		return
	}
	c.turn = turnRelief
	c.relieved.Store(true)
	c.reliefWG.Add(1)
	go c.relief()
}

// relief is a relief reader's goroutine (Relieve).
func (c *Conn) relief() {
	defer c.reliefWG.Done()
	var err error
	for {
		f, rerr := c.fr.ReadFrame()
		if rerr != nil {
			err = rerr
			break
		}
		if herr := c.h.HandleFrame(f); herr != nil {
			err = herr
			break
		}
		if c.serveBack.Load() {
			break
		}
	}
	if err != nil {
		c.end(err)
	}
	c.rmu.Lock()
	c.readErr = err
	c.turn = turnServe
	c.rmu.Unlock()
	select {
	case c.wakeServe <- struct{}{}:
	default:
	}
}

// awaitRelief is Serve's goroutine back from the work that Relieve covered:
// it waits for the relief reader to give the turn back, and returns the
// error that ended the connection meanwhile, if any.
func (c *Conn) awaitRelief() error {
	c.serveBack.Store(true)
	c.rmu.Lock()
	for c.turn != turnServe {
		c.rmu.Unlock()
		<-c.wakeServe
		c.rmu.Lock()
	}
	err := c.readErr
	c.readErr = nil
	c.relieved.Store(false)
	c.serveBack.Store(false)
	c.rmu.Unlock()
	return err
}
