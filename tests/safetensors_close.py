"""Relative difference of two F32 safetensors files: ||a - b|| / ||b|| over all tensors together.

  safetensors_close.py A B [MAX]   prints the difference; exits 1 when it exceeds MAX (if given)
"""
import json, struct, sys, math
def load(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8+n]); base = 8 + n; out = {}
    for k, v in h.items():
        if k == '__metadata__': continue
        assert v['dtype'] == 'F32', (k, v['dtype'])
        s, e = v['data_offsets']
        out[k] = struct.unpack('<%df' % ((e - s) // 4), b[base+s:base+e])
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == b.keys()
diff = sum((x - y) ** 2 for k in a for x, y in zip(a[k], b[k]))
norm = sum(y * y for k in b for y in b[k])
rel = math.sqrt(diff / norm)
print('relative difference %.3g' % rel)
sys.exit(0 if len(sys.argv) < 4 or rel <= float(sys.argv[3]) else 1)
