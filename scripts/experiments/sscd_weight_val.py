from protocols import *
def load(tag):
    d=np.load(os.environ.get("EXP_DIR","/tmp/knockoff-exp")+f"/{tag}.npz"); return l2(d["orig"])
A=load("l0"); S=load("sscd")
grp=np.array([r["category"].split("/")[0] for r in V])
def m2(Sim,gp):
    prods,M=rank_products(Sim,gp); r1=prods[M.argmax(1)]==pV
    return " ".join(f"{g}={r1[grp==g].mean():.3f}" for g in ["Packages","Fruit","Vegetables"])+f" all={r1.mean():.3f}"
for w in [0,0.2,0.3,0.4,0.5]:
    E=l2(np.hstack([np.sqrt(w)*S,np.sqrt(1-w)*A])); c,t,v=split(E)
    print(w,"P1",m2(v@c.T,pC),"| P2",m2(v@np.concatenate([c,t]).T,np.concatenate([pC,pT])))
