//go:build ucx

#include "vucx.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <pthread.h>
#include <ucp/api/ucp.h>

#define VUCX_AM_ID 7

// vucx_mu serialises every UCX call of the process: the workers of
// several transports in one process share UCX's asynchronous event
// machinery, and one worker's progress was seen to trip an assertion in
// it (async.c, "handler->async == async") while another context was
// being set up or torn down. The owner goroutines each make their UCX
// calls in turn; uncontended, the lock costs tens of nanoseconds a call.
static pthread_mutex_t vucx_mu = PTHREAD_MUTEX_INITIALIZER;
#define VUCX_ARENA (1 << 20)
// Progress stops while this much of the arena is still free, so that the
// eager messages of one more progress call fit without a malloc.
#define VUCX_ARENA_SLACK (128 << 10)

struct vucx_worker {
	ucp_context_h ctx;
	ucp_worker_h w;
	ucp_listener_h listener;
	int efd;
	int peer_errors;
	vucx_event *ev;
	int nev, cap;
	char *arena;
	size_t used;
	long sends, pulls; // requests in flight (vucx_inflight)
};

// What precedes the bytes of a buffer from vucx_alloc: the send's header
// must stay valid until UCX is done with the send, like its data.
typedef struct vucx_sendbuf {
	vucx_worker *w;
	uint64_t ep;
	uint64_t hdr[4];
	uint64_t token; // not 0: the data is the caller's, tell it when done
} vucx_sendbuf;

typedef struct vucx_pull {
	vucx_worker *w;
	uint64_t token;
} vucx_pull;

static vucx_event *push(vucx_worker *w) {
	if (w->nev == w->cap) {
		int cap = w->cap * 2;
		vucx_event *ev = realloc(w->ev, (size_t)cap * sizeof(vucx_event));
		if (ev == NULL) {
			abort();
		}
		w->ev = ev;
		w->cap = cap;
	}
	vucx_event *e = &w->ev[w->nev++];
	memset(e, 0, sizeof(*e));
	return e;
}

static ucs_status_t am_cb(void *arg, const void *header, size_t header_length, void *data,
                          size_t length, const ucp_am_recv_param_t *param) {
	vucx_worker *w = arg;
	vucx_event *e = push(w);
	memcpy(e->hdr, header, header_length < sizeof(e->hdr) ? header_length : sizeof(e->hdr));
	e->len = length;
	if (param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) {
		e->ep = (uint64_t)(uintptr_t)param->reply_ep;
	}
	if (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) {
		e->type = VUCX_EV_RNDV;
		e->desc = (uint64_t)(uintptr_t)data;
		return UCS_INPROGRESS;
	}
	e->type = VUCX_EV_RECV;
	if (length == 0) {
		return UCS_OK;
	}
	if (w->used + length <= VUCX_ARENA) {
		memcpy(w->arena + w->used, data, length);
		e->off = w->used;
		w->used += (length + 7) & ~(size_t)7;
		if (w->used > VUCX_ARENA) {
			w->used = VUCX_ARENA;
		}
		return UCS_OK;
	}
	void *copy = malloc(length);
	if (copy == NULL) {
		abort();
	}
	memcpy(copy, data, length);
	e->copy = copy;
	e->flags = VUCX_RECV_MALLOC;
	return UCS_OK;
}

static void ep_err_cb(void *arg, ucp_ep_h ep, ucs_status_t status) {
	vucx_worker *w = arg;
	vucx_event *e = push(w);
	e->type = VUCX_EV_EP_ERR;
	e->ep = (uint64_t)(uintptr_t)ep;
	e->status = status;
}

static void conn_cb(ucp_conn_request_h req, void *arg) {
	vucx_worker *w = arg;
	vucx_event *e = push(w);
	e->type = VUCX_EV_CONN_REQ;
	e->desc = (uint64_t)(uintptr_t)req;
}

static void send_cb(void *request, ucs_status_t status, void *user_data) {
	vucx_sendbuf *sb = user_data;
	if (sb->token != 0) {
		vucx_event *e = push(sb->w);
		e->type = VUCX_EV_SEND_DONE;
		e->ep = sb->ep;
		e->desc = sb->token;
		e->status = status;
	} else if (status != UCS_OK && status != UCS_ERR_CANCELED) {
		vucx_event *e = push(sb->w);
		e->type = VUCX_EV_SEND_ERR;
		e->ep = sb->ep;
		e->status = status;
	}
	sb->w->sends--;
	free(sb);
	ucp_request_free(request);
}

static void pull_cb(void *request, ucs_status_t status, size_t length, void *user_data) {
	vucx_pull *p = user_data;
	vucx_event *e = push(p->w);
	e->type = VUCX_EV_RNDV_DONE;
	e->desc = p->token;
	e->status = status;
	e->len = length;
	p->w->pulls--;
	free(p);
	ucp_request_free(request);
}

static int unlocked_open(const char *tls, const char *devices, int peer_errors, vucx_worker **out, char *err,
              size_t errlen) {
	ucp_config_t *config;
	ucs_status_t st = ucp_config_read(NULL, NULL, &config);
	if (st != UCS_OK) {
		snprintf(err, errlen, "reading UCX configuration: %s", ucs_status_string(st));
		return st;
	}
	if (tls != NULL && tls[0] != '\0') {
		st = ucp_config_modify(config, "TLS", tls);
		if (st != UCS_OK) {
			ucp_config_release(config);
			snprintf(err, errlen, "UCX transports \"%s\": %s", tls, ucs_status_string(st));
			return st;
		}
	}
	if (devices != NULL && devices[0] != '\0') {
		st = ucp_config_modify(config, "NET_DEVICES", devices);
		if (st != UCS_OK) {
			ucp_config_release(config);
			snprintf(err, errlen, "UCX devices \"%s\": %s", devices, ucs_status_string(st));
			return st;
		}
	}
	ucp_params_t params = {0};
	params.field_mask = UCP_PARAM_FIELD_FEATURES;
	params.features = UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
	vucx_worker *w = calloc(1, sizeof(*w));
	if (w == NULL) {
		abort();
	}
	w->peer_errors = peer_errors;
	st = ucp_init(&params, config, &w->ctx);
	ucp_config_release(config);
	if (st != UCS_OK) {
		snprintf(err, errlen, "ucp_init: %s", ucs_status_string(st));
		free(w);
		return st;
	}
	ucp_worker_params_t wp = {0};
	wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
	wp.thread_mode = UCS_THREAD_MODE_SERIALIZED;
	st = ucp_worker_create(w->ctx, &wp, &w->w);
	if (st != UCS_OK) {
		snprintf(err, errlen, "ucp_worker_create: %s", ucs_status_string(st));
		ucp_cleanup(w->ctx);
		free(w);
		return st;
	}
	st = ucp_worker_get_efd(w->w, &w->efd);
	if (st == UCS_OK) {
		ucp_am_handler_param_t hp = {0};
		hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_FLAGS |
		                UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG;
		hp.id = VUCX_AM_ID;
		hp.flags = UCP_AM_FLAG_WHOLE_MSG;
		hp.cb = am_cb;
		hp.arg = w;
		st = ucp_worker_set_am_recv_handler(w->w, &hp);
	}
	if (st != UCS_OK) {
		snprintf(err, errlen, "setting up the UCX worker: %s", ucs_status_string(st));
		ucp_worker_destroy(w->w);
		ucp_cleanup(w->ctx);
		free(w);
		return st;
	}
	w->cap = 64;
	w->ev = malloc((size_t)w->cap * sizeof(vucx_event));
	w->arena = malloc(VUCX_ARENA);
	if (w->ev == NULL || w->arena == NULL) {
		abort();
	}
	*out = w;
	return 0;
}

static void unlocked_close(vucx_worker *w) {
	if (w->listener != NULL) {
		ucp_listener_destroy(w->listener);
	}
	ucp_worker_destroy(w->w);
	ucp_cleanup(w->ctx);
	free(w->ev);
	free(w->arena);
	free(w);
}

int vucx_efd(vucx_worker *w) { return w->efd; }

static int sockaddr_of(const char *ip, int port, struct sockaddr_storage *ss, socklen_t *len) {
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, ip, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		*len = sizeof(*in4);
		return 0;
	}
	if (inet_pton(AF_INET6, ip, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*in6);
		return 0;
	}
	return UCS_ERR_INVALID_ADDR;
}

static int unlocked_listen(vucx_worker *w, const char *ip, int port, int *bound) {
	struct sockaddr_storage ss;
	socklen_t len;
	int st = sockaddr_of(ip, port, &ss, &len);
	if (st != 0) {
		return st;
	}
	ucp_listener_params_t lp = {0};
	lp.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER;
	lp.sockaddr.addr = (const struct sockaddr *)&ss;
	lp.sockaddr.addrlen = len;
	lp.conn_handler.cb = conn_cb;
	lp.conn_handler.arg = w;
	st = ucp_listener_create(w->w, &lp, &w->listener);
	if (st != UCS_OK) {
		return st;
	}
	ucp_listener_attr_t la = {0};
	la.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR;
	st = ucp_listener_query(w->listener, &la);
	if (st != UCS_OK) {
		return st;
	}
	if (la.sockaddr.ss_family == AF_INET) {
		*bound = ntohs(((struct sockaddr_in *)&la.sockaddr)->sin_port);
	} else {
		*bound = ntohs(((struct sockaddr_in6 *)&la.sockaddr)->sin6_port);
	}
	return 0;
}

static void ep_common(vucx_worker *w, ucp_ep_params_t *ep) {
	ep->field_mask |= UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER;
	ep->err_mode = w->peer_errors ? UCP_ERR_HANDLING_MODE_PEER : UCP_ERR_HANDLING_MODE_NONE;
	ep->err_handler.cb = ep_err_cb;
	ep->err_handler.arg = w;
}

static int unlocked_accept(vucx_worker *w, uint64_t req, uint64_t *out) {
	ucp_ep_params_t ep = {0};
	ep.field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST;
	ep.conn_request = (ucp_conn_request_h)(uintptr_t)req;
	ep_common(w, &ep);
	ucp_ep_h h;
	ucs_status_t st = ucp_ep_create(w->w, &ep, &h);
	if (st != UCS_OK) {
		return st;
	}
	*out = (uint64_t)(uintptr_t)h;
	return 0;
}

static void unlocked_reject(vucx_worker *w, uint64_t req) {
	if (w->listener != NULL) {
		ucp_listener_reject(w->listener, (ucp_conn_request_h)(uintptr_t)req);
	}
}

static int unlocked_dial(vucx_worker *w, const char *ip, int port, uint64_t *out) {
	struct sockaddr_storage ss;
	socklen_t len;
	int st = sockaddr_of(ip, port, &ss, &len);
	if (st != 0) {
		return st;
	}
	ucp_ep_params_t ep = {0};
	ep.field_mask = UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR;
	ep.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER;
	ep.sockaddr.addr = (const struct sockaddr *)&ss;
	ep.sockaddr.addrlen = len;
	ep_common(w, &ep);
	ucp_ep_h h;
	st = ucp_ep_create(w->w, &ep, &h);
	if (st != UCS_OK) {
		return st;
	}
	*out = (uint64_t)(uintptr_t)h;
	return 0;
}

static uint64_t unlocked_ep_close(vucx_worker *w, uint64_t ep, int force) {
	ucp_request_param_t p = {0};
	p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
	p.flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0;
	ucs_status_ptr_t r = ucp_ep_close_nbx((ucp_ep_h)(uintptr_t)ep, &p);
	if (r == NULL || UCS_PTR_IS_ERR(r)) {
		return 0;
	}
	return (uint64_t)(uintptr_t)r;
}

static int unlocked_req_done(vucx_worker *w, uint64_t req) {
	void *r = (void *)(uintptr_t)req;
	if (ucp_request_check_status(r) == UCS_INPROGRESS) {
		return 0;
	}
	ucp_request_free(r);
	return 1;
}

static void unlocked_req_cancel(vucx_worker *w, uint64_t req) {
	ucp_request_cancel(w->w, (void *)(uintptr_t)req);
}

void *vucx_alloc(size_t len) {
	vucx_sendbuf *sb = malloc(sizeof(vucx_sendbuf) + len);
	if (sb == NULL) {
		return NULL;
	}
	return sb + 1;
}

void vucx_free(void *buf) {
	if (buf != NULL) {
		free((vucx_sendbuf *)buf - 1);
	}
}

static void unlocked_send_batch(vucx_worker *w, vucx_send *s, int n) {
	for (int i = 0; i < n; i++) {
		vucx_sendbuf *sb;
		if (s[i].token != 0) {
			sb = malloc(sizeof(*sb));
			if (sb == NULL) {
				abort();
			}
		} else {
			sb = (vucx_sendbuf *)s[i].buf - 1;
		}
		sb->token = s[i].token;
		s[i].done = 0;
		sb->w = w;
		sb->ep = s[i].ep;
		memcpy(sb->hdr, s[i].hdr, sizeof(sb->hdr));
		ucp_request_param_t p = {0};
		p.op_attr_mask =
		    UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
		p.cb.send = send_cb;
		p.user_data = sb;
		p.flags = s[i].reply ? UCP_AM_SEND_FLAG_REPLY : 0;
		ucs_status_ptr_t r = ucp_am_send_nbx((ucp_ep_h)(uintptr_t)s[i].ep, VUCX_AM_ID, sb->hdr,
		                                     sizeof(sb->hdr), s[i].buf, s[i].len, &p);
		if (r == NULL) {
			free(sb);
			s[i].status = 0;
			s[i].done = 1;
		} else if (UCS_PTR_IS_ERR(r)) {
			free(sb);
			s[i].status = UCS_PTR_STATUS(r);
			s[i].done = 1;
		} else {
			w->sends++;
			s[i].status = 0; // send_cb frees sb and the request
		}
	}
}

static int unlocked_progress(vucx_worker *w, int consumed, int max) {
	// Events may be listed outside progress too (a failed endpoint during
	// another call): drop only those the caller has read.
	if (consumed >= w->nev) {
		w->nev = 0;
		w->used = 0;
	} else if (consumed > 0) {
		memmove(w->ev, w->ev + consumed, (size_t)(w->nev - consumed) * sizeof(vucx_event));
		w->nev -= consumed;
	}
	for (int i = 0; i < 64; i++) {
		if (ucp_worker_progress(w->w) == 0) {
			break;
		}
		if (w->nev >= max || w->used > VUCX_ARENA - VUCX_ARENA_SLACK) {
			break;
		}
	}
	return w->nev;
}

vucx_event *vucx_events(vucx_worker *w) { return w->ev; }
char *vucx_arena(vucx_worker *w) { return w->arena; }

static int unlocked_arm(vucx_worker *w) {
	ucs_status_t st = ucp_worker_arm(w->w);
	if (st == UCS_OK) {
		return 0;
	}
	if (st == UCS_ERR_BUSY) {
		return 1;
	}
	return st;
}

void vucx_signal(vucx_worker *w) { ucp_worker_signal(w->w); }

static int unlocked_rndv_recv(vucx_worker *w, uint64_t desc, void *buf, uint64_t len, uint64_t token) {
	vucx_pull *p = malloc(sizeof(*p));
	if (p == NULL) {
		abort();
	}
	p->w = w;
	p->token = token;
	ucp_request_param_t rp = {0};
	rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
	rp.cb.recv_am = pull_cb;
	rp.user_data = p;
	ucs_status_ptr_t r = ucp_am_recv_data_nbx(w->w, (void *)(uintptr_t)desc, buf, len, &rp);
	if (r == NULL) {
		free(p);
		return 0;
	}
	if (UCS_PTR_IS_ERR(r)) {
		free(p);
		return UCS_PTR_STATUS(r);
	}
	w->pulls++;
	return 1; // pull_cb frees p and the request
}

static void unlocked_data_release(vucx_worker *w, uint64_t desc) {
	ucp_am_data_release(w->w, (void *)(uintptr_t)desc);
}

const char *vucx_status_string(int status) { return ucs_status_string((ucs_status_t)status); }

long vucx_inflight(vucx_worker *w) { return w->sends + w->pulls; }

// The exported calls: each takes vucx_mu around the work.

int vucx_open(const char *tls, const char *devices, int peer_errors, vucx_worker **out, char *err, size_t errlen) {
	pthread_mutex_lock(&vucx_mu);
	int r = unlocked_open(tls, devices, peer_errors, out, err, errlen);
	pthread_mutex_unlock(&vucx_mu);
	return r;
}

void vucx_close(vucx_worker *w) {
	pthread_mutex_lock(&vucx_mu);
	unlocked_close(w);
	pthread_mutex_unlock(&vucx_mu);
}

int vucx_listen(vucx_worker *w, const char *ip, int port, int *bound) {
	pthread_mutex_lock(&vucx_mu);
	int r = unlocked_listen(w, ip, port, bound);
	pthread_mutex_unlock(&vucx_mu);
	return r;
}

int vucx_accept(vucx_worker *w, uint64_t req, uint64_t *ep) {
	pthread_mutex_lock(&vucx_mu);
	int r = unlocked_accept(w, req, ep);
	pthread_mutex_unlock(&vucx_mu);
	return r;
}

void vucx_reject(vucx_worker *w, uint64_t req) {
	pthread_mutex_lock(&vucx_mu);
	unlocked_reject(w, req);
	pthread_mutex_unlock(&vucx_mu);
}

int vucx_dial(vucx_worker *w, const char *ip, int port, uint64_t *ep) {
	pthread_mutex_lock(&vucx_mu);
	int r = unlocked_dial(w, ip, port, ep);
	pthread_mutex_unlock(&vucx_mu);
	return r;
}

uint64_t vucx_ep_close(vucx_worker *w, uint64_t ep, int force) {
	pthread_mutex_lock(&vucx_mu);
	uint64_t r = unlocked_ep_close(w, ep, force);
	pthread_mutex_unlock(&vucx_mu);
	return r;
}

int vucx_req_done(vucx_worker *w, uint64_t req) {
	pthread_mutex_lock(&vucx_mu);
	int r = unlocked_req_done(w, req);
	pthread_mutex_unlock(&vucx_mu);
	return r;
}

void vucx_req_cancel(vucx_worker *w, uint64_t req) {
	pthread_mutex_lock(&vucx_mu);
	unlocked_req_cancel(w, req);
	pthread_mutex_unlock(&vucx_mu);
}

void vucx_send_batch(vucx_worker *w, vucx_send *s, int n) {
	pthread_mutex_lock(&vucx_mu);
	unlocked_send_batch(w, s, n);
	pthread_mutex_unlock(&vucx_mu);
}

int vucx_progress(vucx_worker *w, int consumed, int max) {
	pthread_mutex_lock(&vucx_mu);
	int r = unlocked_progress(w, consumed, max);
	pthread_mutex_unlock(&vucx_mu);
	return r;
}

int vucx_arm(vucx_worker *w) {
	pthread_mutex_lock(&vucx_mu);
	int r = unlocked_arm(w);
	pthread_mutex_unlock(&vucx_mu);
	return r;
}

int vucx_rndv_recv(vucx_worker *w, uint64_t desc, void *buf, uint64_t len, uint64_t token) {
	pthread_mutex_lock(&vucx_mu);
	int r = unlocked_rndv_recv(w, desc, buf, len, token);
	pthread_mutex_unlock(&vucx_mu);
	return r;
}

void vucx_data_release(vucx_worker *w, uint64_t desc) {
	pthread_mutex_lock(&vucx_mu);
	unlocked_data_release(w, desc);
	pthread_mutex_unlock(&vucx_mu);
}
