"""The presence model with the top product's lead over the 10th (s1 - s10) as a third
feature, and where the counterfeit threshold's false-accusation bound is fitted: on the
catalog's halves (what knockoff index does) or on a two-cluster split of each product's
photos ("another shoot"). Look-alike protocol (scripts/eval_lookalike.sh: packaged goods,
7 products relabelled counterfeit; catalog + train photos as the catalog, val as queries),
in a projection as self-calibration fits it. Prints the threshold for a 2 % rate and what it
does on val: false accusations and catches. Embeddings: $EXP_DIR/single-photo (made by
single_photo_transfer). Args: model names (default: efficientnet-lite0 sscd-lite0).
docs/evaluation.md, "Tried since, and dropped"."""
import json, csv, math, os, sys, numpy as np
HERE = os.path.dirname(os.path.abspath(__file__))
G = os.path.join(HERE, "../../../shared/data/grocery")
D = os.path.join(os.environ.get("EXP_DIR", "/tmp/knockoff-exp"), "single-photo")
FAKES={"arla-lactose-medium-fat-milk","god-morgon-orange-red-grapefruit-juice","tropicana-golden-grapefruit","alpro-vanilla-soyghurt","alpro-shelf-soy-milk","arla-ecological-sour-cream","yoggi-vanilla-yoghurt"}
rows=lambda n: list(csv.DictReader(open(f"{G}/{n}.csv")))
C,T,V=rows("catalog"),rows("photos-train"),rows("photos-val")
def run(model):
    emb=lambda t: np.array([json.loads(l)["embedding"] for l in open(f"{D}/{model}-{t}.jsonl")])
    EC,ET,EV=emb("catalog"),emb("train"),emb("val")
    keep=lambda rs:np.array([r["category"].startswith("Packages/") for r in rs])
    kg=np.concatenate([keep(C),keep(T)])
    GE=np.concatenate([EC,ET])[kg]; gp=np.array([r["product_id"] for r,k in zip(C+T,kg) if k])
    VE=EV[keep(V)]; vp=np.array([r["product_id"] for r,k in zip(V,keep(V)) if k])
    l2=lambda x:x/np.linalg.norm(x,axis=1,keepdims=True); GE,VE=l2(GE),l2(VE)
    def fit_proj(X,y,shr=0.1):
        mu=X.mean(0); d=X.shape[1]; prods=np.unique(y); cm={p:X[y==p].mean(0) for p in prods}
        R=X-np.array([cm[p] for p in y]); Sw=R.T@R/len(X); Sw+=np.eye(d)*shr*np.trace(Sw)/d
        e,U=np.linalg.eigh(Sw); P1=U/np.sqrt(np.maximum(e,1e-12)); Xc=X-mu; St=(Xc@P1).T@(Xc@P1)/len(X); e2,U2=np.linalg.eigh(St)
        P=P1@U2[:,np.argsort(-e2)[:max(len(prods)-1,128)]]; return lambda Z:l2((Z-mu)@P)
    def rank(Q,Gx,gpx,k=11):
        S=Q@Gx.T; prods=np.unique(gpx); M=np.stack([S[:,gpx==p].max(1) for p in prods],1); o=np.argsort(-M,1)[:,:k]
        return prods[o], np.take_along_axis(M,o,1)
    def split_lookups(side):
        out=[]
        for f in (0,1):
            g=side!=f; q=(side==f)&np.isin(gp,gp[g]); pr=fit_proj(GE[g],gp[g])
            P,S=rank(pr(GE[q]),pr(GE[g]),gp[g]); out.append((gp[q],P,S))
        return [np.concatenate([x[i] for x in out]) for i in range(3)]
    halves=np.zeros(len(gp),int)
    for p in np.unique(gp):
        idx=np.where(gp==p)[0]; halves[idx]=(np.arange(len(idx))*2>=len(idx)).astype(int)
    clusters=np.zeros(len(gp),int); rs=np.random.default_rng(0)
    for p in np.unique(gp):
        idx=np.where(gp==p)[0]; X=GE[idx]; c=X[[0,-1]]
        for _ in range(20):
            a=np.argmax(X@c.T,1); c=np.stack([X[a==k].mean(0) if (a==k).any() else c[k] for k in (0,1)])
        clusters[idx]=a
    def logit(X,y,w,it=60):
        Xb=np.hstack([X,np.ones((len(X),1))]); b=np.zeros(Xb.shape[1])
        for _ in range(it):
            p=1/(1+np.exp(-Xb@b)); H=(Xb*(w*p*(1-p))[:,None]).T@Xb+1e-6*np.eye(len(b)); b+=np.linalg.solve(H,Xb.T@(w*(y-p)))
        return lambda X: 1/(1+np.exp(-np.hstack([X,np.ones((len(X),1))])@b))
    def feats(S,kind):
        f=[S[:,0],S[:,0]-S[:,1]]
        if kind=="lead": f.append(S[:,0]-S[:,9])
        return np.stack(f,1)
    def drop(t,P,S): 
        keep=[p!=q for p,q in zip(P,t)]; return np.array([p[k][:10] for p,k in zip(P,keep)]),np.array([s[k][:10] for s,k in zip(S,keep)])
    def pcf(P,S,mp,pres,kind):
        c1=mp(feats(S,"base")); pin=pres(feats(S,kind)); s2=S[:,1:2]; w=np.exp(20*(S[:,1:10]-s2)); w=w/w.sum(1,keepdims=True)
        conf=np.concatenate([(pin*c1)[:,None], (pin*(1-c1))[:,None]*w],1); fake=np.isin(P[:,:10],list(FAKES))
        return (conf*fake).sum(1)
    def cp(k,n,d=0.025):
        """One-sided upper Clopper-Pearson bound (as src/fit clopper_pearson_upper), by bisection."""
        if k>=n: return 1.0
        cdf=lambda p: sum(math.comb(n,i)*p**i*(1-p)**(n-i) for i in range(k+1))
        lo,hi=k/n,1.0
        for _ in range(60):
            mid=(lo+hi)/2; lo,hi=(mid,hi) if cdf(mid)>d else (lo,mid)
        return hi
    def threshold(pa_pos,pa_none,alpha=0.02,sa=0.05):
        for t in np.sort(np.unique(np.r_[pa_pos,pa_none,[0]]))[::-1]:
            b=(1-sa)*cp((pa_pos>=t).sum(),len(pa_pos))+sa*cp((pa_none>=t).sum(),len(pa_none))
            if b>alpha: return prev
            prev=t
        return prev
    th,Ph,Sh=split_lookups(halves); tc,Pc,Sc=split_lookups(clusters)
    pr=fit_proj(GE,gp); PV,SV=rank(pr(VE),pr(GE),gp)
    okh=(Ph[:,0]==th).astype(float); print(model,"halves top1 %.3f clusters top1 %.3f val R1 %.3f"%(okh.mean(),(Pc[:,0]==tc).mean(),(PV[:,0]==vp).mean()))
    for kind in ["base","lead"]:
        mp=logit(feats(Sh,"base"),okh,np.ones(len(okh)))
        Pn,Sn=drop(th,Ph,Sh); X=np.concatenate([feats(Sh,kind),feats(Sn,kind)]); y=np.r_[np.ones(len(Sh)),np.zeros(len(Sn))]
        w=np.r_[np.full(len(Sh),0.95*2),np.full(len(Sn),0.05*2)]; pres=logit(X,y,w)
        vfake=np.isin(vp,list(FAKES))
        pv=pcf(PV,SV,mp,pres,kind)
        for src,(t_,P_,S_) in [("halves",(th,Ph,Sh)),("clusters",(tc,Pc,Sc))]:
            Pn_,Sn_=drop(t_,P_,S_); auth=~np.isin(t_,list(FAKES))
            t=threshold(pcf(P_,S_,mp,pres,kind)[auth], pcf(Pn_,Sn_,mp,pres,kind)[auth])
            print(f"  presence {kind:4s} thresholds on {src:8s}: t={t:.3f} val FAR {np.mean(pv[~vfake]>=t):.3f} ({(pv[~vfake]>=t).sum()}/{(~vfake).sum()}) catch {np.mean(pv[vfake]>=t):.3f}")

for m in sys.argv[1:] or ["efficientnet-lite0", "sscd-lite0"]:
    run(m)
