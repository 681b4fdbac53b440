from protocols import *
for tag in sys.argv[1:]:
    d=np.load(os.environ.get("EXP_DIR","/tmp/knockoff-exp")+f"/{tag}.npz")
    o,f=l2(d["orig"]),l2(d["flip"])
    P1P2(tag,o)
    P1P2(tag+"+flip",l2(o+f))
