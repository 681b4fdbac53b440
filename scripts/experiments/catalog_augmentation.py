from protocols import *
from whitening_unseen_products import wfit
def load(tag):
    d=np.load(os.environ.get("EXP_DIR","/tmp/knockoff-exp")+f"/{tag}.npz"); return l2(d["orig"])
A=load("l0"); S=load("sscd"); au=np.load(os.environ.get("EXP_DIR","/tmp/knockoff-exp")+"/aug.npz"); al=au["labels"]
grp=np.array([r["category"].split("/")[0] for r in V])
w=0.3
fuse=lambda s,a: l2(np.hstack([np.sqrt(w)*l2(s),np.sqrt(1-w)*l2(a)]))
E=fuse(S,A); c,t,v=split(E)
Eaug=fuse(au["sscd_aug"],au["l0_aug"]); Vcrop=fuse(au["sscd_crop"],au["l0_crop"])
paug=pC[al]
def rep(name,Sim,gp):
    prods,M=rank_products(Sim,gp); o=np.argsort(-M,1); r1=prods[o[:,0]]==pV; r5=(prods[o[:,:5]]==pV[:,None]).any(1)
    print(f"{name:45s}", " ".join(f"{g}={r1[grp==g].mean():.3f}" for g in ["Packages","Fruit","Vegetables"]),f"all={r1.mean():.3f} pkg5={r5[grp=='Packages'].mean():.3f}")
rep("P1 fused",v@c.T,pC)
rep("P1 fused query crop70",Vcrop@c.T,pC)
rep("P1 fused query orig+crop",l2(v+Vcrop)@c.T,pC)
g=np.concatenate([c,Eaug]); gp=np.concatenate([pC,paug])
rep("P1 gallery+aug",v@g.T,gp)
for reg in [0.1,0.3,1.0]:
  for dims in [80,128,256]:
    mu,P=wfit(g,gp,reg,dims,"white"); pr=lambda X:l2((X-mu)@P)
    rep(f"P1 gallery+aug whitened reg={reg} d={dims}",pr(v)@pr(g).T,gp)
    rep(f"P1 orig only, whitened from aug reg={reg} d={dims}",pr(v)@pr(c).T,pC)
