/* A scripted peer on one end of a socketpair: plays a transcript against the code under test. */
#pragma once

#include <stdbool.h>

/* Transcript lines (blank lines and lines starting with '#' are skipped):
 *   > JSON        send JSON as one line; the text "$ID" (quotes included) becomes the id of the
 *                 client's last message
 *   < JSON        read one line from the client and compare as JSON, ignoring "id"
 *   <fd JSON      the same, and an SCM_RIGHTS fd must have come with the client's data
 *   raw TEXT      send TEXT and a newline as they are
 *   partial TEXT  send TEXT without a newline
 *   big N         send one line of N bytes (a JSON string reply), ignoring a client that hangs up
 *   events N NAME send N events NAME with "data": {"n": 0..N-1}
 *   close         shut the connection down (the client reads EOF)
 *   wait-eof      wait until the client closes its end
 * Each read is bounded (5 s). */
struct fake_peer;

/* Start playing transcript: an absolute path, or one relative to $TORPOR_TEST_DATA. */
int fake_peer_start(struct fake_peer **ret_peer, const char *transcript);

/* The client's end; ownership moves to the caller on the first call (later calls: -EBADF). */
int fake_peer_fd(struct fake_peer *p);

/* Wait (at most 5 s) for the transcript to end: true if every line played and matched. */
bool fake_peer_done(struct fake_peer *p);

/* Why the transcript failed, or "". */
const char *fake_peer_error(struct fake_peer *p);

/* Interrupt, join and free; NULL-safe. */
void fake_peer_stop(struct fake_peer *p);
