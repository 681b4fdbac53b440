from protocols import *
def load(tag):
    d=np.load(os.environ.get("EXP_DIR","/tmp/knockoff-exp")+f"/{tag}.npz"); return l2(d["orig"])
A=load("l0"); S=load("sscd"); cr=np.load(os.environ.get("EXP_DIR","/tmp/knockoff-exp")+"/crops.npz")
grpV=np.array([r["category"].split("/")[0] for r in V]); grpT=np.array([r["category"].split("/")[0] for r in T])
w=0.3
fuse=lambda s,a: l2(np.hstack([np.sqrt(w)*l2(s),np.sqrt(1-w)*l2(a)]))
E=fuse(S,A); c,t,v=split(E)
def rep(name,Sim,gp,q,grp):
    prods,M=rank_products(Sim,gp); o=np.argsort(-M,1); r1=prods[o[:,0]]==q; r5=(prods[o[:,:5]]==q[:,None]).any(1)
    print(f"{name:38s}", " ".join(f"{g[:3]}={r1[grp==g].mean():.3f}" for g in ["Packages","Fruit","Vegetables"]),f"all={r1.mean():.3f} pkg5={r5[grp=='Packages'].mean():.3f} all5={r5.mean():.3f}")
nT=len(T)
print("== selection on photos-train (P1: train queries vs catalog)")
rep("none",t@c.T,pC,pT,grpT)
for f in [0.5,0.6,0.7,0.8,0.9]:
    Q=fuse(cr[f"sscd_{f}"],cr[f"l0_{f}"]); rep(f"crop {f}",Q[:nT]@c.T,pC,pT,grpT)
print("== photos-val P1")
rep("none",v@c.T,pC,pV,grpV)
for f in [0.5,0.6,0.7,0.8,0.9]:
    Q=fuse(cr[f"sscd_{f}"],cr[f"l0_{f}"]); rep(f"crop {f}",Q[nT:]@c.T,pC,pV,grpV)
print("== photos-val P2 (gallery train uncropped / cropped same f)")
g=np.concatenate([c,t]); gp=np.concatenate([pC,pT])
rep("none",v@g.T,gp,pV,grpV)
for f in [0.6,0.7,0.8]:
    Q=fuse(cr[f"sscd_{f}"],cr[f"l0_{f}"]); rep(f"crop {f} q only",Q[nT:]@g.T,gp,pV,grpV)
    g2=np.concatenate([c,Q[:nT]]); rep(f"crop {f} q+train",Q[nT:]@g2.T,gp,pV,grpV)
# lite0 alone
print("== lite0 alone P1 val")
for f in [None,0.7]:
    Q=l2(A) if f is None else l2(cr[f"l0_{f}"])
    cc=split(l2(A))[0]; q=split(Q)[2] if f is None else Q[nT:]
    rep(f"l0 crop {f}",q@cc.T,pC,pV,grpV)
