/* (being written) */
#include <config.h>

#include "tests/lib/harness.h"

int main(void)
{
	h_init("t_txn_state", 60);
	tap_skip_all("not written yet");
	return h_done();
}
