from protocols import *
from supervised_whitening import whiten_fit, Af, Sf, F
import numpy as np
rng=np.random.default_rng(0)
prods=np.unique(pC)
for E,name in [(Af,"l0f"),(F,"fused")]:
  c,t,v=split(E)
  res={}
  for seed in range(4):
    perm=np.random.default_rng(seed).permutation(prods); A=set(perm[:40])
    inA=lambda p:np.array([x in A for x in p])
    gA=np.concatenate([c[inA(pC)],t[inA(pT)]]); yA=np.concatenate([pC[inA(pC)],pT[inA(pT)]])
    cb,pcb=c[~inA(pC)],pC[~inA(pC)]; qb=~inA(pV)
    global pkgV
    for reg in [0.1,0.3,1.0]:
      for dims in [39,128,512]:
        if dims>39: 
            # whitening w/o LDA truncation: use Sw^-1/2 then PCA on total
            mu=gA.mean(0); Xc=gA-mu; cls=np.unique(yA)
            means=np.stack([Xc[yA==k].mean(0) for k in cls]); W=Xc-means[np.searchsorted(cls,yA)]
            Sw=W.T@W/len(W); Sw+=reg*np.trace(Sw)/len(Sw)*np.eye(len(Sw))
            ev_,vec=np.linalg.eigh(Sw); P=vec/np.sqrt(ev_)
            Z=Xc@P; e2,v2=np.linalg.eigh(Z.T@Z); P=P@v2[:,::-1][:,:dims]
        else: mu,P=whiten_fit(gA,yA,reg,dims)
        pr=lambda X:l2((X-mu)@P)
        prods_,M=rank_products(pr(v[qb])@pr(cb).T,pcb); r1=prods_[M.argmax(1)]==pV[qb]
        res.setdefault((reg,dims),[]).append((r1[pkgV[qb]].mean(),r1.mean()))
    prods_,M=rank_products(v[qb]@cb.T,pcb); r1=prods_[M.argmax(1)]==pV[qb]
    res.setdefault("base",[]).append((r1[pkgV[qb]].mean(),r1.mean()))
  for k,vv in res.items(): print(name,k,np.mean(vv,0).round(3))
