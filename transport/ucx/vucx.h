// The C side of transport/ucx: a thin layer over UCP that keeps every UCX
// callback in C. Callbacks append events to the worker's list; the Go owner
// goroutine reads them after each progress call. Nothing here calls Go.
#ifndef VUCX_H
#define VUCX_H

#include <stddef.h>
#include <stdint.h>

// Event types.
enum {
	VUCX_EV_RECV = 1,      // a whole message: data at arena offset, or malloc'd (flags)
	VUCX_EV_RNDV = 2,      // a rendezvous message announced: desc to pull with vucx_rndv_recv
	VUCX_EV_RNDV_DONE = 3, // a pull finished: token, status
	VUCX_EV_EP_ERR = 4,    // an endpoint failed: ep, status
	VUCX_EV_CONN_REQ = 5,  // a client connects to the listener: desc is the request
	VUCX_EV_SEND_ERR = 6,  // a send failed after it was queued: ep, status
	VUCX_EV_SEND_DONE = 7  // a send of the caller's buffer (token) finished: desc is the token, status
};

// Flags of a VUCX_EV_RECV event.
enum {
	VUCX_RECV_MALLOC = 1 // data is a malloc'd copy (copy): free it
};

typedef struct vucx_event {
	uint32_t type;
	int32_t status;
	uint64_t ep;     // the endpoint (the reply endpoint of a message sent with reply)
	uint64_t hdr[4]; // the message header
	uint64_t off;  // RECV: offset in the arena
	uint64_t len;  // RECV, RNDV: data length
	uint64_t desc; // RNDV: data descriptor; CONN_REQ: request; RNDV_DONE: token
	void *copy;    // RECV with VUCX_RECV_MALLOC: the malloc'd data
	uint32_t flags;
	uint32_t pad;
} vucx_event;

typedef struct vucx_worker vucx_worker;

// A message to send, filled by Go. Without a token, buf was returned by
// vucx_alloc: the layer owns it from the call on and frees it when UCX is
// done with it. With a token, buf is the caller's (pinned) memory, which
// must stay until the send is done: done says it finished in the call,
// else a VUCX_EV_SEND_DONE with the token follows.
typedef struct vucx_send {
	uint64_t ep;
	void *buf;
	uint64_t len;
	uint64_t hdr[4];
	uint64_t token;
	uint32_t reply;  // send with UCP_AM_SEND_FLAG_REPLY: the receiver learns the endpoint
	int32_t status;  // out: 0 sent or in flight, < 0 a ucs_status_t error
	uint32_t done;   // out, with a token: the send finished in the call
	uint32_t pad;
} vucx_send;

// vucx_open creates a context and a worker. tls and devices (either may be
// empty) set UCX's TLS and NET_DEVICES; peer_errors selects
// UCP_ERR_HANDLING_MODE_PEER for endpoints. err receives UCX's message on
// failure.
int vucx_open(const char *tls, const char *devices, int peer_errors, vucx_worker **out, char *err,
              size_t errlen);
void vucx_close(vucx_worker *w);
int vucx_efd(vucx_worker *w);
int vucx_listen(vucx_worker *w, const char *ip, int port, int *bound);
int vucx_accept(vucx_worker *w, uint64_t req, uint64_t *ep);
void vucx_reject(vucx_worker *w, uint64_t req);
int vucx_dial(vucx_worker *w, const char *ip, int port, uint64_t *ep);
// vucx_ep_close starts closing ep (force: drop what is queued) and returns
// the close request to poll with vucx_req_done, or 0 when done at once.
uint64_t vucx_ep_close(vucx_worker *w, uint64_t ep, int force);
// vucx_req_done reports 1 (and frees req) once the request is complete.
int vucx_req_done(vucx_worker *w, uint64_t req);
void vucx_req_cancel(vucx_worker *w, uint64_t req);

void *vucx_alloc(size_t len);
void vucx_free(void *buf);
// vucx_send_batch sends n messages in order and fills each status.
void vucx_send_batch(vucx_worker *w, vucx_send *s, int n);

// vucx_progress first drops the consumed events the caller read after its
// last call, then progresses the worker until it is idle, max events are
// listed, or the arena is nearly full; it returns the number of events
// listed (read them with vucx_events, their data with vucx_arena).
int vucx_progress(vucx_worker *w, int consumed, int max);
vucx_event *vucx_events(vucx_worker *w);
char *vucx_arena(vucx_worker *w);
// vucx_arm returns 0 when the worker may sleep on its event fd, 1 when
// events are pending, < 0 on error.
int vucx_arm(vucx_worker *w);
void vucx_signal(vucx_worker *w);

// vucx_rndv_recv pulls an announced message into buf (pinned Go memory):
// 0 done at once, 1 in flight (a VUCX_EV_RNDV_DONE with token follows),
// < 0 an error.
int vucx_rndv_recv(vucx_worker *w, uint64_t desc, void *buf, uint64_t len, uint64_t token);
void vucx_data_release(vucx_worker *w, uint64_t desc);
const char *vucx_status_string(int status);
// vucx_inflight counts the sends and pulls that UCX has not finished.
long vucx_inflight(vucx_worker *w);

#endif
