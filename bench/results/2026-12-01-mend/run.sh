#!/bin/bash
export TORPOR_CACHE_DIR=/var/cache/torpor
for round in 1 2; do
for which in prev main; do
  if [ $which = prev ]; then dir=PREV; else dir=/work/main; fi
  export TORPOR_BUILD_DIR=$dir/build TORPORD=$dir/build/src/daemon/torpord TORPOR=$dir/build/src/cli/torpor
  cd $dir
  bench/standby-restore -n 10 --memory 256 --dirty > bmend-$which-sr-$round.txt 2>&1
  bench/fork -n 5 --memory 256 --fanout 1 > bmend-$which-fork-$round.txt 2>&1
done
done
echo done > bmend-done
