#!/bin/bash
# Interleaved: baseline (2fc572e, /tmp/before) vs main HEAD (/work/main).
export TORPOR_CACHE_DIR=/var/cache/torpor
for round in 1 2 3; do
for which in before main; do
  if [ $which = before ]; then dir=/tmp/before; else dir=/work/main; fi
  export TORPOR_BUILD_DIR=$dir/build TORPORD=$dir/build/src/daemon/torpord TORPOR=$dir/build/src/cli/torpor
  cd $dir
  bench/standby-restore -n 10 --memory 256 2048 --dirty 0 > bm-$which-sr-$round.txt 2>&1
  bench/fork -n 5 --memory 256 2048 --fanout 1 4 > bm-$which-fork-$round.txt 2>&1
  echo "$which $round $(cat /proc/loadavg)" >> bm-log
done
done
echo done > bm-done
