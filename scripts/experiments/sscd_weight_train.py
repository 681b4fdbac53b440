from protocols import *
def load(tag):
    d=np.load(os.environ.get("EXP_DIR","/tmp/knockoff-exp")+f"/{tag}.npz"); return l2(d["orig"])
A=load("l0"); S=load("sscd")
grpT=np.array([r["category"].split("/")[0] for r in T])
for w in [0,0.2,0.3,0.4,0.5,0.6]:
    E=l2(np.hstack([np.sqrt(w)*S,np.sqrt(1-w)*A])); c,t,v=split(E)
    prods,M=rank_products(t@c.T,pC); r1=prods[M.argmax(1)]==pT
    print(w,"P1-train", " ".join(f"{g}={r1[grpT==g].mean():.3f}" for g in ["Packages","Fruit","Vegetables"]),f"all={r1.mean():.3f}")
