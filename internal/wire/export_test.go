package wire

// SetStep sets the size of fr's first buffer for a long frame, so that
// tests reach the growth of a buffer with small frames.
func SetStep(fr *FrameReader, n int) { fr.step = n }
