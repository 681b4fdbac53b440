from protocols import *
import cv2, time
det_name=sys.argv[1]; K=int(sys.argv[2]); maxside=int(sys.argv[3])
d=np.load(os.environ.get("EXP_DIR","/tmp/knockoff-exp")+"/l0.npz"); E=l2(l2(d["orig"])+l2(d["flip"]))
c,t,v=split(E)
def load(p):
    im=cv2.imread(os.path.join(G,p),cv2.IMREAD_GRAYSCALE)
    s=maxside/max(im.shape); 
    if s<1: im=cv2.resize(im,None,fx=s,fy=s,interpolation=cv2.INTER_AREA)
    return im
det={"sift":lambda:cv2.SIFT_create(nfeatures=1000),"orb":lambda:cv2.ORB_create(nfeatures=1000),"akaze":lambda:cv2.AKAZE_create()}[det_name]()
norm=cv2.NORM_L2 if det_name=="sift" else cv2.NORM_HAMMING
bf=cv2.BFMatcher(norm)
t0=time.time()
cf=[det.detectAndCompute(load(r["image"]),None) for r in C]
print("cat feats",time.time()-t0, np.mean([len(k) for k,_ in cf]))
S=v@c.T
order=np.argsort(-S,1)[:,:K]
inl=np.zeros((len(V),K))
t0=time.time()
for i,r in enumerate(V):
    kq,dq=det.detectAndCompute(load(r["image"]),None)
    if dq is None or len(kq)<4: continue
    for j,ci in enumerate(order[i]):
        kc,dc=cf[ci]
        if dc is None or len(kc)<4: continue
        ms=bf.knnMatch(dq,dc,k=2)
        good=[m[0] for m in ms if len(m)==2 and m[0].distance<0.8*m[1].distance]
        if len(good)<6: inl[i,j]=len(good)*0; continue
        src=np.float32([kq[m.queryIdx].pt for m in good]); dst=np.float32([kc[m.trainIdx].pt for m in good])
        H,mask=cv2.findHomography(src,dst,cv2.RANSAC,8.0)
        inl[i,j]=0 if mask is None else mask.sum()
print("query time/query",(time.time()-t0)/len(V))
np.save(os.environ.get("EXP_DIR","/tmp/knockoff-exp")+f"/inl_{det_name}_{K}_{maxside}.npy",inl)
top=pC[order]
for w in [0,0.002,0.005,0.01,0.02,0.05]:
  for thr in [0,8,12,15,20]:
    sc=np.take_along_axis(S,order,1)+w*np.where(inl>=thr,inl,0)
    o=np.argsort(-sc,1); best=np.take_along_axis(top,o,1)[:,0]
    r1=best==pV
    print(f"w={w} thr={thr} pkg1={r1[pkgV].mean():.3f} all1={r1.mean():.3f} fv1={r1[~pkgV].mean():.3f}")
