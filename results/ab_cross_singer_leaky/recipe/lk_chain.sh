#!/bin/bash
# The shipped RNN's README recipe with --leaky 0.01 (inherited from the frame model): stages 2-5 after stage 1.
set -e
cd /work/main
. /work/venv/bin/activate
C="--data ../shared/data/mir1k/train --vocal-speed 0.12 --eq-db 6 --samples-per-epoch 1920 --threads 1 --quiet"
# stage 1 (runs/rnn-lk-long-eq6) is started by hand; its run ends when its log names the best checkpoint
until grep -q "savedModel_RNN_best.pt$" runs/rnn-lk-long-eq6.log 2>/dev/null; do sleep 30; done
[ -f runs/rnn-lk-first.pt ] || python export_model.py runs/rnn-lk-long-eq6/savedModel_RNN_best.pt runs/rnn-lk-first.pt
python train_rnn.py $C --init runs/rnn-lk-first.pt --lr 3e-4 --epochs 40 --lr-decay-patience 3 --patience 8 --seed 43 \
    --run-dir runs/rnn-lk-eq6-ft > runs/rnn-lk-eq6-ft.log 2>&1
python export_model.py runs/rnn-lk-eq6-ft/savedModel_RNN_best.pt runs/rnn-lk-second.pt \
    --continues runs/rnn-lk-first_history.json
python train_rnn.py $C --init runs/rnn-lk-second.pt --lr 3e-4 --loss sdr --epochs 40 --lr-decay-patience 3 --patience 8 \
    --seed 44 --run-dir runs/rnn-lk-sdr > runs/rnn-lk-sdr.log 2>&1
python export_model.py runs/rnn-lk-sdr/savedModel_RNN_best.pt runs/rnn-lk-third.pt --continues runs/rnn-lk-second_history.json
python train_rnn.py $C --init runs/rnn-lk-third.pt --lr 1e-4 --loss sdr --epochs 40 --lr-decay-patience 3 --patience 8 \
    --seed 45 --run-dir runs/rnn-lk-sdr2 > runs/rnn-lk-sdr2.log 2>&1
python export_model.py runs/rnn-lk-sdr2/savedModel_RNN_best.pt runs/rnn-lk-fourth.pt --continues runs/rnn-lk-third_history.json
python train_rnn.py $C --init runs/rnn-lk-fourth.pt --lr 3e-4 --loss sdr --epochs 6 --lr-decay-patience 99 --patience 99 \
    --seed 93 --run-dir runs/rnn-lk-soup-a > runs/rnn-lk-soup-a.log 2>&1 &
python train_rnn.py $C --init runs/rnn-lk-fourth.pt --lr 3e-4 --loss sdr --epochs 6 --lr-decay-patience 99 --patience 99 \
    --seed 94 --run-dir runs/rnn-lk-soup-b > runs/rnn-lk-soup-b.log 2>&1
wait
echo "chain done through the soup stage"
