/* Instance states and their single-hop transitions (placeholder until the table lands). */
#include "instance/state.h"
