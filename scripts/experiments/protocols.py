import numpy as np, csv, os, sys
G=os.path.join(os.path.dirname(os.path.abspath(__file__)),"../../../shared/data/grocery")
def rows(k): return list(csv.DictReader(open(os.path.join(G,k+".csv"))))
C,T,V=rows("catalog"),rows("photos-train"),rows("photos-val")
nC,nT=len(C),len(T)
def split(a): return a[:nC],a[nC:nC+nT],a[nC+nT:]
pid=lambda rs:np.array([r["product_id"] for r in rs])
cat=lambda rs:np.array([r["category"] for r in rs])
pC,pT,pV=pid(C),pid(T),pid(V)
pkgV=np.array([c.startswith("Packages/") for c in cat(V)])
def l2(x): return x/np.linalg.norm(x,axis=1,keepdims=True)
def rank_products(S, gal_pid):
    # S: q x g sims; nearest image wins per product
    prods=np.unique(gal_pid)
    M=np.full((S.shape[0],len(prods)),-9.0)
    for j,p in enumerate(prods):
        M[:,j]=S[:,gal_pid==p].max(1)
    return prods,M
def metrics(S,gal_pid,qpid=pV):
    prods,M=rank_products(S,gal_pid)
    order=np.argsort(-M,1)
    top=prods[order]
    r1=(top[:,0]==qpid); r5=(top[:,:5]==qpid[:,None]).any(1)
    return dict(pkg1=r1[pkgV].mean(),all1=r1.mean(),pkg5=r5[pkgV].mean(),all5=r5.mean())
def fmt(name,d): print(f"{name:40s} "+" ".join(f"{k}={v:.3f}" for k,v in d.items()))
def P1P2(name,E):
    c,t,v=split(E)
    fmt(name+" P1",metrics(v@c.T,pC))
    g=np.concatenate([c,t]); fmt(name+" P2",metrics(v@g.T,np.concatenate([pC,pT])))
