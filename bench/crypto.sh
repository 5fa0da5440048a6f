#!/usr/bin/env bash
# Encryption throughput (MB/s, 10^6 bytes) through spar vs openssl on the
# same data, side by side in one run:
#   through spar: spar-cryptobench streams the file through gRPC
#                 EncryptAlpha1 then DecryptAlpha1 (Dapr's dapr.io/enc/v1:
#                 64 KiB segments, AES-256-GCM or ChaCha20-Poly1305, file
#                 key wrapped with A256KW by crypto.dapr.localstorage)
#   openssl enc:  the same file → /dev/null. `openssl enc` refuses AEAD
#                 ciphers, so AES-256-CTR (GCM's keystream without its
#                 GHASH) and ChaCha20 (without Poly1305) stand in
#   openssl speed: -evp aes-256-gcm / chacha20-poly1305 on 64 KiB blocks
#                 in memory — the primitive's ceiling on this machine
# Usage: bench/crypto.sh [path/to/spar] [MB] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/release/spar}"
MB="${2:-64}"
ROUNDS="${3:-3}"
CRYPTOBENCH="${CRYPTOBENCH:-$(dirname "$BIN")/spar-cryptobench}"
command -v openssl >/dev/null || { echo "needs openssl"; exit 1; }
[ -x "$CRYPTOBENCH" ] || { echo "needs $CRYPTOBENCH (cargo build --release -p spar-loadgen)"; exit 1; }
PORT=$((26000 + RANDOM % 5000))
# shellcheck source=bench/lib.sh
. bench/lib.sh

mkdir -p "$work/res" "$work/keys"
head -c 32 /dev/urandom | base64 >"$work/keys/bench-key"
cat >"$work/res/crypto.yaml" <<YAML
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: localcrypto
spec:
  type: crypto.dapr.localstorage
  version: v1
  metadata:
  - name: path
    value: $work/keys
YAML
spar_up "$BIN" cryptobench "$PORT" "$work/res"
head -c "$((MB * 1024 * 1024))" /dev/urandom >"$work/data"
bytes=$((MB * 1024 * 1024))

# MB/s of `openssl enc` over the file, best of ROUNDS.
enc_mbps() { # cipher
  local best=0 t0 t1 r
  for _ in $(seq "$ROUNDS"); do
    t0=$(date +%s%N)
    openssl enc "-$1" -K "$(printf '%064d' 0)" -iv "$(printf '%032d' 0)" -in "$work/data" -out /dev/null
    t1=$(date +%s%N)
    r=$(awk -v b="$bytes" -v ns=$((t1 - t0)) 'BEGIN{printf "%.1f", b / (ns / 1e9) / 1e6}')
    best=$(awk -v a="$best" -v b="$r" 'BEGIN{print (b > a) ? b : a}')
  done
  echo "$best"
}
# MB/s of `openssl speed -evp` on 64 KiB blocks (it prints 1000s of bytes/s).
speed_mbps() { # cipher
  openssl speed -evp "$1" -seconds 1 -bytes 65536 2>/dev/null |
    awk -v c="$1" 'toupper($1) == toupper(c) {v=$2; sub(/k$/, "", v); printf "%.1f", v / 1000}'
}

read -r aes_enc aes_dec < <("$CRYPTOBENCH" "127.0.0.1:$((PORT + 1))" localcrypto bench-key A256KW "$work/data" --rounds "$ROUNDS")
read -r cha_enc cha_dec < <("$CRYPTOBENCH" "127.0.0.1:$((PORT + 1))" localcrypto bench-key A256KW "$work/data" --cipher chacha20-poly1305 --rounds "$ROUNDS")
ctr=$(enc_mbps aes-256-ctr)
c20=$(enc_mbps chacha20)
sgcm=$(speed_mbps aes-256-gcm)
scha=$(speed_mbps chacha20-poly1305)

echo "$MB MiB of random data, best of $ROUNDS; MB/s (10^6 bytes per second)."
echo
echo "| cipher | spar encrypt (gRPC stream) | spar decrypt (gRPC stream) | openssl enc (file → /dev/null) | openssl speed (64 KiB blocks, memory) |"
echo "|---|---|---|---|---|"
echo "| AES-256-GCM | $aes_enc | $aes_dec | $ctr (aes-256-ctr) | $sgcm |"
echo "| ChaCha20-Poly1305 | $cha_enc | $cha_dec | $c20 (chacha20) | $scha |"
