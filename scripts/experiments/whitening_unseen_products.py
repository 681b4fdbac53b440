from protocols import *
from supervised_whitening import load, Af, Sf, F
A=load("l0",False); S=load("sscd",False)
P1P2("sscd⊕l0 noflip", l2(np.hstack([np.sqrt(.5)*S,np.sqrt(.5)*A])))
def wfit(X,y,reg,dims,mode):
    mu=X.mean(0); Xc=X-mu; cls=np.unique(y)
    means=np.stack([Xc[y==k].mean(0) for k in cls]); W=Xc-means[np.searchsorted(cls,y)]
    Sw=W.T@W/len(W); Sw+=reg*np.trace(Sw)/len(Sw)*np.eye(len(Sw))
    e,vec=np.linalg.eigh(Sw); P=vec/np.sqrt(e)
    Z=(means if mode=="lda" else Xc)@P; e2,v2=np.linalg.eigh(Z.T@Z/len(Z)); 
    return mu,P@v2[:,::-1][:,:dims]
for E,name in [(F,"fused")]:
    c,t,v=split(E); g=np.concatenate([c,t]); gp=np.concatenate([pC,pT])
    for mode in ["lda","white"]:
      for reg in [0.1,0.3]:
        for dims in [80,256]:
            if mode=="lda" and dims>80: continue
            mu,P=wfit(g,gp,reg,dims,mode); pr=lambda X:l2((X-mu)@P)
            fmt(f"{name} {mode} reg={reg} d={dims}",metrics(pr(v)@pr(g).T,gp))
    # simulate new products after fit: fit on 60 products, evaluate on all
    prods=np.unique(pC); A60=set(np.random.default_rng(1).permutation(prods)[:60]); m=np.array([p in A60 for p in gp])
    for mode,dims in [("lda",59),("white",256),("white",512)]:
        mu,P=wfit(g[m],gp[m],0.1,dims,mode); pr=lambda X:l2((X-mu)@P)
        qn=np.array([p not in A60 for p in pV])
        prods_,M=rank_products(pr(v)@pr(g).T,gp); r1=prods_[M.argmax(1)]==pV
        print(mode,dims,"fit on 60: r1 seen",r1[~qn].mean().round(3),"new",r1[qn].mean().round(3))
    prods_,M=rank_products(v@g.T,gp); r1=prods_[M.argmax(1)]==pV
    print("base seen",r1[~qn].mean().round(3),"new",r1[qn].mean().round(3))
