import sys, os, csv, tomllib, numpy as np, onnxruntime as ort
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),".."))
from reference_embed import load_rgb, preprocess
G=os.path.join(os.path.dirname(os.path.abspath(__file__)),"../../../shared/data/grocery")
C=list(csv.DictReader(open(G+"/catalog.csv")))
def trim(im, pad=0.02, tol=24):
    a=np.asarray(im,dtype=np.int16); h,w,_=a.shape; b=max(1,min(h,w)//25)
    border=np.concatenate([a[:b].reshape(-1,3),a[-b:].reshape(-1,3),a[:,:b].reshape(-1,3),a[:,-b:].reshape(-1,3)])
    med=np.median(border,0); fg=(np.abs(a-med).max(2)>tol)
    ys,xs=np.where(fg)
    if len(ys)<50: return im
    x0,x1,y0,y1=xs.min(),xs.max()+1,ys.min(),ys.max()+1
    px,py=int(w*pad),int(h*pad)
    return im.crop((max(0,x0-px),max(0,y0-py),min(w,x1+px),min(h,y1+py)))
ims=[trim(load_rgb(os.path.join(G,r["image"]))) for r in C]
print([im.size for im in ims[:8]])
out={}
for tag,mdir in [("l0",os.path.join(os.path.dirname(os.path.abspath(__file__)),"../../models/")+"efficientnet-lite0"),("sscd",os.path.join(os.path.dirname(os.path.abspath(__file__)),"../../models/")+"sscd-distilled")]:
    m=tomllib.load(open(mdir+"/model.toml","rb")); so=ort.SessionOptions(); so.intra_op_num_threads=2
    s=ort.InferenceSession(os.path.join(mdir,m["file"]),so,providers=["CPUExecutionProvider"])
    x=np.stack([preprocess(im,m["input"]) for im in ims])
    out[tag]=np.concatenate([s.run([m["output"]["name"]],{m["input"]["name"]:x[i:i+16]})[0].reshape(-1,m["output"]["dim"]) for i in range(0,len(x),16)])
np.savez(os.environ.get("EXP_DIR","/tmp/knockoff-exp")+"/trim.npz",**out)
