// Package file is a discovery backend for the processes of one host: a
// JSON registry file that every process reads and writes.
//
// Each process opens a Registry on the same path and gives it to its
// messenger's builder. Registering writes the instance's entry with an
// expiry TTL ahead; the registration's goroutine pushes the expiry forward
// every Refresh (TTL/3 by default), so an instance that dies without
// withdrawing (killed, crashed) stops being found within TTL. Close
// removes the entry at once.
//
// Writers serialise on flock(2) of a sidecar lock file (path+".lock") and
// replace the registry by writing a temporary file and renaming it over
// the old one, so a reader, which takes no lock, always sees a whole file.
// Expired entries are dropped by the next writer and ignored by readers.
//
// On systems without flock (anything but Linux, the BSDs and macOS),
// registering fails with an error wrapping errors.ErrUnsupported; lookups
// work.
//
// The file looks like this (expires in Unix milliseconds):
//
//	{
//	  "version": 1,
//	  "instances": {
//	    "5f0c…": {"addresses": {"tcp": "127.0.0.1:40123"}, "expires": 1767225600000, "token": "…"}
//	  }
//	}
package file
